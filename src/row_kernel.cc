#include "src/row_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "src/labels.h"
#include "src/tensor.h"

namespace calib {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// How far from 1 a row of probabilities may sum (metrics.md, "Input kinds").
constexpr double kSumTolerance = 1e-3;
// Softmax rows per call of the vectorised passes.
constexpr uint64_t kChunk = 256;

template <typename T>
void Widen(const char* p, uint32_t n, double* z) {
  for (uint32_t k = 0; k < n; ++k) {
    T v;
    std::memcpy(&v, p + sizeof(T) * k, sizeof(T));
    z[k] = static_cast<double>(v);
  }
}

void WidenRow(v1::DType dtype, const char* p, uint32_t n, double* z) {
  switch (dtype) {
    case v1::DTYPE_FLOAT64:
      Widen<double>(p, n, z);
      break;
    case v1::DTYPE_FLOAT16:
      for (uint32_t k = 0; k < n; ++k) {
        uint16_t h;
        std::memcpy(&h, p + 2 * k, 2);
        z[k] = HalfToFloat(h);
      }
      break;
    case v1::DTYPE_BFLOAT16:
      for (uint32_t k = 0; k < n; ++k) {
        uint16_t h;
        std::memcpy(&h, p + 2 * k, 2);
        z[k] = BFloat16ToFloat(h);
      }
      break;
    default:
      Widen<float>(p, n, z);
      break;
  }
}

// What a sigmoid sample needs, from one exp and one log1p: p = sigmoid(x), the binary
// cross-entropy against y in {0, 1} (stable for any x) and the entropy of Bernoulli(p)
// in nats, log(1 + e^-|x|) + |x| sigmoid(-|x|). All three share e = exp(-|x|).
struct SigmoidSample {
  double p;
  double bce;
  double entropy;
};

// From sigmoid(-|x|), sigmoid(|x|) and log1p(exp(-|x|)), computed one at a time or by
// SigmoidTermsSimd.
SigmoidSample SigmoidFrom(double x, double low, double high, double log_term, int32_t y) {
  if (std::isinf(x)) {
    const bool up = x > 0;
    return {up ? 1.0 : 0.0, up == (y == 1) ? 0 : kInf, 0};
  }
  return {x >= 0 ? high : low, std::max(x, 0.0) - x * y + log_term,
          log_term + std::abs(x) * low};
}

SigmoidSample SigmoidOf(double x, int32_t y) {
  const double e = std::exp(-std::abs(x));
  return SigmoidFrom(x, e / (1 + e), 1 / (1 + e), std::log1p(e), y);
}

// One row's terms of the temperature fit's d1 and d2 (temperature_fit.h): the mean and
// variance of z' = z - max z under p, from sum e, sum e z' and sum e z'^2, and the
// label's gap z_y - max z. The raw pass and the fit's own passes both add them here.
void AddFitMoments(double sum_exp, double sum_ez, double sum_ez2, double gap, double* d1,
                   double* d2) {
  const double mean = sum_ez / sum_exp;
  *d1 += mean - gap;
  *d2 += std::max(0.0, sum_ez2 / sum_exp - mean * mean);
}

std::string At(uint64_t row, uint32_t column) {
  return absl::StrCat("batch.logits at row ", row, ", column ", column);
}

}  // namespace

std::optional<std::string> RowKernel::LoadRow(const RowSource& src, uint64_t r,
                                              double* z) const {
  const uint32_t c = options_.num_classes;
  const uint64_t row = src.first_row + r;
  WidenRow(src.dtype, src.logits + r * c * DTypeSize(src.dtype), c, z);
  switch (options_.input_kind) {
    case v1::INPUT_KIND_PROBABILITIES: {
      double sum = 0;
      for (uint32_t k = 0; k < c; ++k) {
        if (!(z[k] >= 0 && z[k] <= 1)) {
          return absl::StrCat(At(row, k), " is ", z[k],
                              ", not a probability in [0, 1] (input_kind PROBABILITIES)");
        }
        sum += z[k];
      }
      if (!options_.sigmoid() && std::abs(sum - 1) > kSumTolerance) {
        return absl::StrCat("batch.logits row ", row, " sums to ", sum,
                            ", not 1 within 1e-3 (input_kind PROBABILITIES)");
      }
      for (uint32_t k = 0; k < c; ++k) {
        z[k] = options_.sigmoid() ? std::log(z[k]) - std::log1p(-z[k]) : std::log(z[k]);
      }
      return std::nullopt;
    }
    case v1::INPUT_KIND_LOG_PROBABILITIES: {
      bool any_finite = false;
      for (uint32_t k = 0; k < c; ++k) {
        if (!(z[k] <= 0)) {
          return absl::StrCat(At(row, k), " is ", z[k],
                              ", not a log-probability <= 0 (input_kind "
                              "LOG_PROBABILITIES)");
        }
        any_finite = any_finite || std::isfinite(z[k]);
        // log p -> logit(p) = log p - log(1 - p) = v - log(-expm1(v)).
        if (options_.sigmoid()) z[k] = z[k] - std::log(-std::expm1(z[k]));
      }
      if (!any_finite && !options_.sigmoid()) {
        return absl::StrCat("batch.logits row ", row,
                            " is -inf everywhere: no class has a probability");
      }
      return std::nullopt;
    }
    default:
      for (uint32_t k = 0; k < c; ++k) {
        if (!std::isfinite(z[k])) {
          return absl::StrCat(At(row, k), " is ", z[k], "; logits must be finite");
        }
      }
      return std::nullopt;
  }
}

bool RowKernel::Vectorised() const {
  return !options_.sigmoid() && options_.input_kind == v1::INPUT_KIND_LOGITS &&
         !options_.classwise;
}

absl::Status RowKernel::Accumulate(const RowSource& src, uint64_t begin, uint64_t end,
                                   Affine affine, Sums* sums, SampleSink sink) const {
  if (Vectorised()) return AccumulateSoftmax(src, begin, end, affine.scale, sums, sink);
  if (options_.sigmoid()) return AccumulateSigmoid(src, begin, end, affine, sums, sink);
  const uint32_t c = options_.num_classes;
  std::vector<double> z(c);
  for (uint64_t r = begin; r < end; ++r) {
    if (auto bad = LoadRow(src, r, z.data())) return absl::InvalidArgumentError(*bad);
    const int32_t label = src.labels[r];
    // An ignored row says nothing about the kind of input either.
    if (label == kIgnoredLabel) continue;
    AddSoftmaxRow(z.data(), label, affine, sums, &sink);
    NoteProbabilities(z.data(), sums);
  }
  return absl::OkStatus();
}

void RowKernel::NoteProbabilities(const double* z, Sums* sums) const {
  if (options_.input_kind != v1::INPUT_KIND_LOGITS || !sums->looks_like_probabilities) {
    return;
  }
  double sum = 0;
  bool in_range = true;
  for (uint32_t k = 0; k < options_.num_classes; ++k) {
    in_range = in_range && z[k] >= 0 && z[k] <= 1;
    sum += z[k];
  }
  sums->looks_like_probabilities =
      in_range && (options_.sigmoid() || std::abs(sum - 1) <= kSumTolerance);
}

absl::Status RowKernel::AccumulateSigmoid(const RowSource& src, uint64_t begin,
                                          uint64_t end, Affine affine, Sums* sums,
                                          SampleSink sink) const {
  // Rows go in chunks of about 1024 values, so that the exponentials of a binary
  // model's one logit a row are vectorised across rows.
  const uint32_t c = options_.num_classes;
  const uint64_t chunk_rows = std::max<uint64_t>(1, 1024 / c);
  std::vector<double> x(chunk_rows * c), low(x.size()), high(x.size()),
      log_term(x.size());
  SigmoidTerms terms{low.data(), high.data(), log_term.data()};
  for (uint64_t first = begin; first < end; first += chunk_rows) {
    const uint64_t rows = std::min(chunk_rows, end - first);
    for (uint64_t r = 0; r < rows; ++r) {
      double* z = x.data() + r * c;
      if (auto bad = LoadRow(src, first + r, z)) return absl::InvalidArgumentError(*bad);
      NoteProbabilities(z, sums);
      for (uint32_t k = 0; k < c; ++k) z[k] = affine.scale * z[k] + affine.shift;
    }
    SigmoidTermsSimd(x.data(), rows * c, &terms);
    for (uint64_t r = 0; r < rows; ++r) {
      const size_t at = r * c;
      AddSigmoidRow(x.data() + at, SigmoidTerms{&low[at], &high[at], &log_term[at]},
                    src.labels + (first + r) * c, sums, &sink);
    }
  }
  return absl::OkStatus();
}

absl::Status RowKernel::AccumulateSoftmax(const RowSource& src, uint64_t begin,
                                          uint64_t end, double scale, Sums* sums,
                                          SampleSink sink) const {
  const uint32_t c = options_.num_classes;
  const size_t row_bytes = size_t{c} * DTypeSize(src.dtype);
  std::vector<double> z;  // a widened row, for the rare cases that need one
  // The raw pass also takes the temperature fit's first step (TemperatureTerms at 1).
  const bool first_fit_step = options_.fit_temperature && scale == 1;
  // Rows go in chunks: their passes, then one vectorised log1p and exp for the chunk
  // (a row of few classes spent a fifth of its time in libm's), then each row's figures
  // in row order.
  std::vector<SoftmaxRowStats> stats(kChunk);
  // Ranks are counted for the labels themselves (kIgnoredLabel, negative, asks none).
  static_assert(kIgnoredLabel < 0);
  const std::vector<int32_t> no_ranks(kChunk, -1);
  std::vector<double> z_label(kChunk), rest(kChunk), gap(kChunk), log_sum(kChunk),
      e_gap(kChunk);
  for (uint64_t first = begin; first < end; first += kChunk) {
    const uint64_t rows = std::min(kChunk, end - first);
    SoftmaxRowsSimd(src.dtype, src.logits + first * row_bytes, rows, c, scale,
                    sums->top_k.empty() ? no_ranks.data() : src.labels + first,
                    stats.data(), first_fit_step);
    for (uint64_t i = 0; i < rows; ++i) {
      const uint64_t r = first + i;
      const char* row = src.logits + r * row_bytes;
      const int32_t label = src.labels[r];
      const bool ignored = label == kIgnoredLabel;
      const SoftmaxRowStats& st = stats[i];
      if (!st.finite) {
        // The scalar load finds the first bad value and words the message.
        z.resize(c);
        if (auto bad = LoadRow(src, r, z.data())) return absl::InvalidArgumentError(*bad);
        return absl::InternalError(absl::StrCat("batch.logits row ", src.first_row + r,
                                                ": the vector pass saw a non-finite "
                                                "value that the scalar pass did not"));
      }
      rest[i] = gap[i] = 0;
      if (ignored) continue;  // validated; an ignored row says nothing more
      WidenRow(src.dtype, row + size_t(label) * DTypeSize(src.dtype), 1, &z_label[i]);
      // log sum e = log1p(ties - 1 + rest): exact to the ulp for very confident rows.
      rest[i] = (st.ties - 1) + st.rest;
      gap[i] = scale * (z_label[i] - st.max);
    }
    SoftmaxFinishSimd(rest.data(), gap.data(), rows, log_sum.data(), e_gap.data());
    for (uint64_t i = 0; i < rows; ++i) {
      const uint64_t r = first + i;
      const int32_t label = src.labels[r];
      if (label == kIgnoredLabel) continue;
      const SoftmaxRowStats& st = stats[i];
      const double sum_exp = st.ties + st.rest;
      const double d_label = gap[i];
      const double p_label = e_gap[i] / sum_exp;
      const double confidence = 1 / sum_exp;
      const bool correct = st.argmax == static_cast<uint32_t>(label);
      const double nll = log_sum[i] - d_label;
      const double brier = (st.ties + st.rest_sq) / (sum_exp * sum_exp) - 2 * p_label + 1;
      sums->samples += 1;
      sums->correct += correct;
      sums->nll += nll;
      sums->brier += brier;
      sums->confidence += confidence;
      sums->entropy += log_sum[i] - st.sum_ed / sum_exp;
      if (first_fit_step) {
        AddFitMoments(sum_exp, st.sum_ed, st.sum_ed2, d_label, &sums->temperature_d1,
                      &sums->temperature_d2);
      }
      const char* row = src.logits + r * row_bytes;
      if (!sums->top_k.empty()) {
        uint32_t rank = st.above;
        if (st.level > 1) {  // ties with the label's logit: those before it rank above
          z.resize(c);
          WidenRow(src.dtype, row, static_cast<uint32_t>(label), z.data());
          for (int32_t k = 0; k < label; ++k) rank += z[k] == z_label[i];
        }
        for (size_t j = 0; j < options_.top_k.size(); ++j) {
          sums->top_k[j] += rank < options_.top_k[j];
        }
      }
      AddSample(confidence, correct, correct, nll, brier, sums, &sink);
      if (sums->looks_like_probabilities) {
        // Only a row within [0, 1] needs widening to be checked.
        if (st.min >= 0 && st.max <= 1) {
          z.resize(c);
          WidenRow(src.dtype, row, c, z.data());
          NoteProbabilities(z.data(), sums);
        } else {
          sums->looks_like_probabilities = false;
        }
      }
    }
  }
  return absl::OkStatus();
}

void RowKernel::AddSample(double confidence, bool positive, bool correct, double nll,
                          double brier, Sums* sums, SampleSink* sink) const {
  const uint32_t bin = EqualWidthBin(confidence, options_.num_bins, options_.left_closed);
  BinSums& sums_bin = sums->bins[bin];
  sums_bin.count += 1;
  sums_bin.positives += positive;
  sums_bin.sum_confidence += confidence;
  *sink->next++ = {confidence, static_cast<uint8_t>(positive)};
  if (options_.bootstrap_samples > 0) {
    sums->replicates.Add(options_.seed, sink->index, correct, nll, brier, bin, confidence,
                         positive);
  }
  ++sink->index;
}

void RowKernel::AddSoftmaxRow(const double* z, int32_t label, Affine affine, Sums* sums,
                              SampleSink* sink) const {
  const uint32_t c = options_.num_classes;
  const double s = affine.scale;
  // argmax on the unscaled logits: ties to the smallest index, and a positive scale
  // cannot change it.
  uint32_t argmax = 0;
  for (uint32_t k = 1; k < c; ++k) {
    if (z[k] > z[argmax]) argmax = k;
  }
  const double m = s * z[argmax];
  double sum_exp = 0, sum_sq = 0, sum_pz = 0;  // sum_pz: sum e^(x-m) (x-m)
  for (uint32_t k = 0; k < c; ++k) {
    if (z[k] == -kInf) continue;
    const double d = s * z[k] - m;
    const double e = std::exp(d);
    sum_exp += e;
    sum_sq += e * e;
    sum_pz += e * d;
  }
  const double log_sum = std::log(sum_exp);
  const double p_label = z[label] == -kInf ? 0 : std::exp(s * z[label] - m) / sum_exp;
  const double confidence = 1 / sum_exp;
  const bool correct = argmax == static_cast<uint32_t>(label);

  const double nll = z[label] == -kInf ? kInf : log_sum - (s * z[label] - m);
  const double brier = sum_sq / (sum_exp * sum_exp) - 2 * p_label + 1;
  sums->samples += 1;
  sums->correct += correct;
  sums->nll += nll;
  sums->brier += brier;
  sums->confidence += confidence;
  sums->entropy += log_sum - sum_pz / sum_exp;
  if (!sums->top_k.empty()) {
    uint32_t rank = 0;
    for (uint32_t k = 0; k < c; ++k) {
      rank += z[k] > z[label] || (z[k] == z[label] && k < static_cast<uint32_t>(label));
    }
    for (size_t i = 0; i < options_.top_k.size(); ++i) {
      sums->top_k[i] += rank < options_.top_k[i];
    }
  }
  AddSample(confidence, correct, correct, nll, brier, sums, sink);

  if (!sums->class_bins.empty()) {
    for (uint32_t k = 0; k < c; ++k) {
      const double p = z[k] == -kInf ? 0 : std::exp(s * z[k] - m) / sum_exp;
      BinSums& cb =
          sums->class_bins[size_t{k} * options_.num_bins +
                           EqualWidthBin(p, options_.num_bins, options_.left_closed)];
      cb.count += 1;
      cb.positives += k == static_cast<uint32_t>(label);
      cb.sum_confidence += p;
    }
  }
}

void RowKernel::AddSigmoidRow(const double* x_row, SigmoidTerms terms,
                              const int32_t* targets, Sums* sums,
                              SampleSink* sink) const {
  for (uint32_t k = 0; k < options_.num_classes; ++k) {
    const int32_t y = targets[k];
    if (y == kIgnoredLabel) continue;
    const double x = x_row[k];
    const SigmoidSample sample =
        SigmoidFrom(x, terms.low[k], terms.high[k], terms.log1p_e[k], y);
    const double p = sample.p;
    const bool correct = (x > 0) == (y == 1);
    const double nll = sample.bce;
    const double brier = (p - y) * (p - y);
    sums->samples += 1;
    sums->correct += correct;
    sums->nll += nll;
    sums->brier += brier;
    sums->confidence += p;
    sums->entropy += sample.entropy;
    // Positive-class convention: bin p against y; TOP_LABEL: max(p, 1 - p) against
    // correctness (metrics.md), taken as sigmoid(|x|) so that x and -x tie exactly (1 - p
    // would round one of them differently, and move a tie across equal-mass bins).
    const double c = options_.top_label ? terms.high[k] : p;
    AddSample(c, options_.top_label ? correct : y == 1, correct, nll, brier, sums, sink);
    if (!sums->class_bins.empty()) {
      BinSums& cb =
          sums->class_bins[size_t{k} * options_.num_bins +
                           EqualWidthBin(p, options_.num_bins, options_.left_closed)];
      cb.count += 1;
      cb.positives += y == 1;
      cb.sum_confidence += p;
    }
  }
}

NllDerivatives RowKernel::TemperatureTerms(const RowSource& src, uint64_t begin,
                                           uint64_t end, double beta) const {
  const uint32_t c = options_.num_classes;
  const uint32_t per_row = options_.samples_per_row();
  NllDerivatives out;
  if (options_.sigmoid() && options_.input_kind == v1::INPUT_KIND_LOGITS) {
    // The sigmoid NLL of beta z is Platt's BCE at (a, b) = (beta, 0): its value, d/da
    // and d2/da2 are the value, d1 and d2 here.
    const PlattDerivatives platt = PlattTerms(src, begin, end, beta, 0);
    return {platt.value, platt.ga, platt.haa};
  }
  std::vector<double> z(c), e(c);
  if (Vectorised()) {
    const size_t row_bytes = size_t{c} * DTypeSize(src.dtype);
    TemperatureRowSums sums[kChunk];
    for (uint64_t first = begin; first < end; first += kChunk) {
      const uint64_t rows = std::min(kChunk, end - first);
      TemperatureRowsSimd(src.dtype, src.logits + first * row_bytes, rows, c, beta, sums);
      for (uint64_t i = 0; i < rows; ++i) {
        const int32_t y = src.labels[first + i];
        if (y == kIgnoredLabel) continue;
        const TemperatureRowSums& t = sums[i];
        double z_label;
        WidenRow(src.dtype,
                 src.logits + (first + i) * row_bytes + size_t(y) * DTypeSize(src.dtype),
                 1, &z_label);
        const double gap = z_label - t.max;
        out.value += std::log1p((t.ties - 1) + t.rest) - beta * gap;
        AddFitMoments(t.ties + t.rest, t.sum_ez, t.sum_ez2, gap, &out.d1, &out.d2);
      }
    }
    return out;
  }
  for (uint64_t r = begin; r < end; ++r) {
    LoadRow(src, r, z.data());
    const int32_t* labels = src.labels + r * per_row;
    if (options_.sigmoid()) {
      for (uint32_t k = 0; k < c; ++k) {
        const int32_t y = labels[k];
        if (y == kIgnoredLabel) continue;
        const double x = beta * z[k];
        if (std::isinf(x) && (x > 0) == (y == 1)) continue;  // certain and right
        const SigmoidSample sample = SigmoidOf(x, y);
        const double p = sample.p;
        out.value += sample.bce;
        out.d1 += (p - y) * z[k];
        out.d2 += p * (1 - p) * z[k] * z[k];
      }
      continue;
    }
    const int32_t y = labels[0];
    if (y == kIgnoredLabel) continue;
    double zmax = z[0];
    for (uint32_t k = 1; k < c; ++k) zmax = std::max(zmax, z[k]);
    // Moments of z - zmax under p(beta), shifted for stability.
    double sum_exp = 0, sum_pd = 0;
    for (uint32_t k = 0; k < c; ++k) {
      e[k] = z[k] == -kInf ? 0 : std::exp(beta * (z[k] - zmax));
      if (e[k] == 0) continue;
      sum_exp += e[k];
      sum_pd += e[k] * (z[k] - zmax);
    }
    const double mean = sum_pd / sum_exp;
    double var = 0;
    for (uint32_t k = 0; k < c; ++k) {
      if (e[k] == 0) continue;
      const double d = z[k] - zmax - mean;
      var += e[k] * d * d;
    }
    out.value += std::log(sum_exp) - beta * (z[y] - zmax);
    out.d1 += mean - (z[y] - zmax);
    out.d2 += var / sum_exp;
  }
  return out;
}

PlattDerivatives RowKernel::PlattTerms(const RowSource& src, uint64_t begin, uint64_t end,
                                       double a, double b) const {
  const uint32_t c = options_.num_classes;
  PlattDerivatives out;
  if (options_.input_kind == v1::INPUT_KIND_LOGITS) {
    const size_t row_bytes = size_t{c} * DTypeSize(src.dtype);
    PlattSpanSimd(src.dtype, src.logits + begin * row_bytes, src.labels + begin * c,
                  (end - begin) * c, a, b, &out);
    return out;
  }
  std::vector<double> z(c);
  for (uint64_t r = begin; r < end; ++r) {
    LoadRow(src, r, z.data());
    const int32_t* targets = src.labels + r * c;
    for (uint32_t k = 0; k < c; ++k) {
      const int32_t y = targets[k];
      if (y == kIgnoredLabel || std::isinf(z[k])) continue;
      const double x = a * z[k] + b;
      const SigmoidSample sample = SigmoidOf(x, y);
      const double p = sample.p;
      const double w = p * (1 - p);
      out.value += sample.bce;
      out.ga += (p - y) * z[k];
      out.gb += p - y;
      out.haa += w * z[k] * z[k];
      out.hab += w * z[k];
      out.hbb += w;
    }
  }
  return out;
}

}  // namespace calib
