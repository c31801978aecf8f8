#include "src/evaluator.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "oneapi/tbb/parallel_for.h"
#include "oneapi/tbb/task_arena.h"
#include "oneapi/tbb/task_group.h"
#include "src/block_accumulator.h"
#include "src/labels.h"
#include "src/metrics.h"
#include "src/platt_fit.h"
#include "src/row_kernel.h"
#include "src/status_macros.h"
#include "src/temperature_fit.h"
#include "src/tensor.h"

namespace calib {
namespace {

// Bytes per sample of the equal-mass store: the pair, and as much again for what the
// equal-mass bins may need at Finish (reliability_bins.h).
constexpr uint64_t kBytesPerSample = 2 * sizeof(ConfidenceSample);
// Rows reach the accumulator in chunks of about this many logit bytes, and of at least
// one wave of blocks (BlockAccumulator reduces 2 x max_concurrency blocks at once), so
// that every thread has a block: each chunk runs whole, and a cancellation is seen
// between two of them.
constexpr uint64_t kChunkBytes = uint64_t{4} << 20;
// What SmoothEce allocates at most: mass grids of up to 2^20 intervals, their coarser
// halvings, and the padded copy, kernel and output of one convolution.
constexpr uint64_t kSmoothEceBytes = uint64_t{64} << 20;

// The heap bytes of one Sums built with `options` (sums.h).
uint64_t SumsBytes(const Options& options) {
  const uint64_t bins = options.num_bins;
  uint64_t bytes = sizeof(Sums) + 8 * options.top_k.size() + sizeof(BinSums) * bins;
  if (options.classwise) bytes += sizeof(BinSums) * bins * options.num_classes;
  // ReplicateSums: 4 scalars and 3 values per bin, per replicate.
  bytes += uint64_t{options.bootstrap_samples} * 8 * (4 + 3 * bins);
  return bytes;
}

// How many Sums a BlockAccumulator holds at once: its total and open block, and a wave
// of two blocks per thread of the arena (block_accumulator.cc).
uint64_t SumsAlive() {
  return 2 + 2 * static_cast<uint64_t>(tbb::this_task_arena::max_concurrency());
}

bool IsCancelled() { return tbb::is_current_task_group_canceling(); }

absl::Status Cancelled() { return absl::CancelledError("the evaluation was cancelled"); }

// Runs `f` in a task_group_context of its own, out of reach of a cancellation of the
// caller's: a BlockAccumulator run must end whole, since its blocks are merged after.
template <typename F>
absl::Status RunWhole(const F& f) {
  tbb::task_group_context own(tbb::task_group_context::isolated);
  absl::Status status;
  tbb::parallel_for(
      0, 1, [&](int) { status = f(); }, own);
  return status;
}

class EvaluatorImpl final : public Evaluator {
 public:
  EvaluatorImpl(const Options& options, const StoreLimits& limits,
                std::unique_ptr<MemoryReservation> reservation)
      : reservation_(std::move(reservation)),
        options_(options),
        kernel_(options),
        accumulator_(options) {
    if (options.fit_temperature) {
      const uint32_t per_row = options.samples_per_row();
      fit_store_.emplace(limits.fit_store_bytes, options.seed, options.num_classes,
                         per_row, kBytesPerSample * per_row, reservation_.get(),
                         options.expected_rows);
    }
  }

  absl::Status Add(TensorView logits, TensorView labels) override {
    if (spent_) return Spent();
    absl::Status status = AddImpl(logits, labels);
    if (!status.ok()) spent_ = true;
    return status;
  }

  absl::StatusOr<v1::Report> Finish() override {
    if (spent_) return Spent();
    spent_ = true;
    return FinishImpl();
  }

  const Options& options() const override { return options_; }
  uint64_t rows() const override { return accumulator_.rows(); }
  uint64_t samples() const override { return samples_; }
  uint64_t reserved_bytes() const override { return reservation_->bytes(); }

 private:
  static absl::Status Spent() {
    return absl::FailedPreconditionError(
        "this evaluation already ended (finished or failed)");
  }

  absl::Status AddImpl(TensorView logits, TensorView labels);
  absl::StatusOr<v1::Report> FinishImpl();
  // Every figure of `metrics` on the stored rows mapped by `affine`.
  absl::Status Recompute(Affine affine, v1::Metrics* metrics);
  // Folds the rows of `src` into `accumulator` chunk by chunk; with `reserve`, reserves
  // the equal-mass store for each chunk first.
  absl::Status Accumulate(BlockAccumulator& accumulator, const RowSource& src,
                          Affine affine, bool reserve);
  // Makes room for `size` elements of `bytes_per_element` reserved bytes in `v`.
  template <typename T, typename A>
  absl::Status EnsureCapacity(std::vector<T, A>& v, uint64_t size,
                              uint64_t bytes_per_element, absl::string_view what);

  // First, so that it is released after every store it accounts for is freed.
  const std::unique_ptr<MemoryReservation> reservation_;
  const Options options_;
  const RowKernel kernel_;
  BlockAccumulator accumulator_;
  bool spent_ = false;
  uint64_t ignored_ = 0;
  uint64_t samples_ = 0;                            // accepted
  v1::DType logits_dtype_ = v1::DTYPE_UNSPECIFIED;  // fixed by the first non-empty batch
  std::vector<int32_t> labels_;                     // the current batch's, reused
  std::optional<FitStore> fit_store_;               // fit_temperature only
};

template <typename T, typename A>
absl::Status EvaluatorImpl::EnsureCapacity(std::vector<T, A>& v, uint64_t size,
                                           uint64_t bytes_per_element,
                                           absl::string_view what) {
  const uint64_t capacity = v.capacity();
  if (size <= capacity) return absl::OkStatus();
  // While the elements are copied the old buffer is alive too, though not what is
  // reserved beyond sizeof(T) for later (the equal-mass bins'): from capacity *
  // bytes_per_element to target * bytes_per_element + the old buffer, then without it.
  const uint64_t old_bytes = capacity * sizeof(T);
  auto grow_to = [&](uint64_t target) {
    return reservation_->Grow((target - capacity) * bytes_per_element + old_bytes, what);
  };
  // Geometric growth keeps the copies linear; the exact size is the fallback when the
  // budget has no room for the geometric one.
  uint64_t target = std::max(size, capacity + capacity / 2);
  absl::Status status = grow_to(target);
  if (!status.ok() && target > size) {
    target = size;
    status = grow_to(target);
  }
  if (!status.ok()) return status;
  v.reserve(target);
  reservation_->Shrink(old_bytes);
  return absl::OkStatus();
}

absl::Status EvaluatorImpl::Accumulate(BlockAccumulator& accumulator,
                                       const RowSource& src, Affine affine,
                                       bool reserve) {
  const uint64_t row_bytes = uint64_t{options_.num_classes} * DTypeSize(src.dtype);
  const uint64_t wave =
      2 * static_cast<uint64_t>(tbb::this_task_arena::max_concurrency());
  const uint64_t chunk =
      std::max<uint64_t>(wave, kChunkBytes / row_bytes / kBlockRows) * kBlockRows;
  const uint32_t per_row = options_.samples_per_row();
  for (uint64_t begin = 0; begin < src.rows;) {
    if (IsCancelled()) return Cancelled();
    const uint64_t global = accumulator.rows();
    const uint64_t end = std::min(src.rows, begin + chunk - global % chunk);
    if (reserve) {
      const int32_t* labels = src.labels + begin * per_row;
      const uint64_t samples = static_cast<uint64_t>(
          (end - begin) * per_row -
          std::count(labels, labels + (end - begin) * per_row, kIgnoredLabel));
      CALIB_RETURN_IF_ERROR(EnsureCapacity(
          accumulator.samples(), accumulator.samples().size() + samples, kBytesPerSample,
          absl::StrCat("the equal-mass store (", kBytesPerSample,
                       " bytes a sample) at row ", src.first_row + begin)));
    }
    RowSource part = src;
    part.logits += begin * row_bytes;
    part.labels += begin * per_row;
    part.rows = end - begin;
    part.first_row = src.first_row + begin;
    CALIB_RETURN_IF_ERROR(RunWhole([&] { return accumulator.Add(part, affine); }));
    begin = end;
  }
  return absl::OkStatus();
}

absl::Status EvaluatorImpl::AddImpl(TensorView logits, TensorView labels) {
  const v1::DType dtype = LogitsDType(logits.dtype);
  if (!IsFloatDType(dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch.logits.dtype is ", DTypeName(dtype), " (", static_cast<int>(logits.dtype),
        "); logits take float32, float64, float16 or bfloat16"));
  }
  const uint64_t row_bytes = uint64_t{options_.num_classes} * DTypeSize(dtype);
  if (logits.data.size() % row_bytes != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch.logits holds ", logits.data.size(),
                     " bytes, not a whole number of rows of ", options_.num_classes, " ",
                     DTypeName(dtype), " values (", row_bytes, " bytes per row)"));
  }
  const uint64_t rows = logits.data.size() / row_bytes;
  if (rows > 0 && logits_dtype_ != v1::DTYPE_UNSPECIFIED && dtype != logits_dtype_) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch.logits.dtype changed from ", DTypeName(logits_dtype_), " to ",
                     DTypeName(dtype), " at row ", accumulator_.rows(),
                     "; one evaluation keeps one dtype"));
  }

  CALIB_RETURN_IF_ERROR(EnsureCapacity(labels_, rows * options_.samples_per_row(),
                                       sizeof(int32_t), "the batch's decoded labels"));
  uint64_t good_rows = 0;
  absl::Status label_status =
      DecodeLabels(options_, labels, rows, accumulator_.rows(), &labels_, &good_rows);
  RowSource src{dtype, logits.data.data(), labels_.data(), rows, accumulator_.rows()};
  if (!label_status.ok()) {
    // Report whichever comes first: this label, or a bad logit in an earlier row.
    src.rows = good_rows;
    CALIB_RETURN_IF_ERROR(Accumulate(accumulator_, src, Affine{}, /*reserve=*/true));
    return label_status;
  }
  if (rows == 0) return absl::OkStatus();
  logits_dtype_ = dtype;
  CALIB_RETURN_IF_ERROR(Accumulate(accumulator_, src, Affine{}, /*reserve=*/true));
  uint64_t ignored = 0;
  for (int32_t label : labels_) ignored += label == kIgnoredLabel;
  ignored_ += ignored;
  samples_ += labels_.size() - ignored;
  if (fit_store_.has_value()) {
    CALIB_RETURN_IF_ERROR(
        fit_store_->Add(dtype, logits.data.data(), labels_.data(), rows));
  }
  return absl::OkStatus();
}

absl::Status EvaluatorImpl::Recompute(Affine affine, v1::Metrics* metrics) {
  // The bootstrap intervals are of the raw figures only.
  Options options = options_;
  options.bootstrap_samples = 0;
  BlockAccumulator again(options);
  // Reserved with the fit store's rows (kBytesPerSample a sample) and its Sums by Create.
  again.samples().reserve(fit_store_->samples());
  // The stored rows passed validation when they arrived.
  CALIB_RETURN_IF_ERROR(Accumulate(again, fit_store_->rows(), affine, /*reserve=*/false));
  if (IsCancelled()) return Cancelled();
  const Sums sums = again.Finish();
  BuildMetrics(options, sums, absl::MakeSpan(again.samples()), metrics);
  return absl::OkStatus();
}

absl::StatusOr<v1::Report> EvaluatorImpl::FinishImpl() {
  if (IsCancelled()) return Cancelled();
  const Sums sums = accumulator_.Finish();
  if (sums.samples == 0) {
    return absl::InvalidArgumentError(
        accumulator_.rows() == 0
            ? std::string("no samples: the evaluation received no rows")
            : absl::StrCat("no samples: every label of the ", accumulator_.rows(),
                           " rows equals ignore_index ",
                           options_.ignore_index.value_or(0)));
  }
  v1::Report report;
  BuildMetrics(options_, sums, absl::MakeSpan(accumulator_.samples()),
               report.mutable_metrics());
  if (IsCancelled()) return Cancelled();
  report.set_num_ignored(ignored_);
  if (options_.bootstrap_samples > 0) {
    *report.mutable_intervals() = sums.replicates.Intervals(options_.confidence_level);
  }

  if (options_.input_kind == v1::INPUT_KIND_LOGITS && sums.looks_like_probabilities) {
    report.add_warnings(absl::StrCat(
        "every value looks like a probability (all in [0, 1]",
        options_.sigmoid() ? "" : " and every row sums to 1",
        ") but input_kind is LOGITS: were probabilities passed where logits were "
        "expected, as with a softmax layer before CrossEntropyLoss? If so, use "
        "input_kind "
        "PROBABILITIES (calib eval --input probabilities). The figures were computed as "
        "asked."));
  }
  if (options_.sigmoid() && !options_.top_k.empty()) {
    report.add_warnings("top_k was ignored: top-k accuracy is defined for SOFTMAX only");
  }

  if (options_.fit_temperature) {
    const RowSource stored = fit_store_->rows();
    const double n = static_cast<double>(fit_store_->samples());
    if (fit_store_->sampled()) {
      report.add_warnings(absl::StrCat(
          "the rows kept for the fits outgrew the fit store's cap of ",
          fit_store_->max_bytes(), " bytes (", fit_store_->row_bytes(),
          " bytes a row): temperature_scaling",
          options_.sigmoid() ? " and platt_scaling" : "", " used a uniform sample of ",
          fit_store_->kept(), " of the ", fit_store_->offered(), " rows (",
          fit_store_->samples(), " of the ", sums.samples,
          " samples; fit_samples), drawn with the config's seed"));
    }
    // The raw pass computed the fit's first step over every sample; with every row kept
    // that is the step the fit would take first.
    std::optional<NllDerivatives> at_one;
    if (kernel_.Vectorised() && !fit_store_->sampled() &&
        fit_store_->samples() == sums.samples) {
      at_one =
          NllDerivatives{sums.nll / n, sums.temperature_d1 / n, sums.temperature_d2 / n};
    }
    const TemperatureFitResult fit = FitTemperature(
        [&](double beta) {
          // A cancelled pass ends at once; its figures are never used.
          if (IsCancelled()) return NllDerivatives{};
          NllDerivatives d = ReduceBlocks<NllDerivatives>(
              stored.rows,
              [&](uint64_t begin, uint64_t end) {
                return kernel_.TemperatureTerms(stored, begin, end, beta);
              },
              [](NllDerivatives& total, const NllDerivatives& part) {
                total.value += part.value;
                total.d1 += part.d1;
                total.d2 += part.d2;
              });
          return NllDerivatives{d.value / n, d.d1 / n, d.d2 / n};
        },
        at_one);
    v1::TemperatureScaling* ts = report.mutable_temperature_scaling();
    ts->set_temperature(fit.temperature);
    ts->set_iterations(fit.iterations);
    ts->set_converged(fit.converged);
    ts->set_fit_samples(fit_store_->samples());
    CALIB_RETURN_IF_ERROR(Recompute({1 / fit.temperature, 0}, ts->mutable_calibrated()));
    if (fit.end == TemperatureFitResult::End::kZero) {
      report.add_warnings(
          "temperature fit: every sample is predicted right with a margin, so the NLL "
          "keeps falling as T -> 0; returned the end of the range, T = 1e-12 "
          "(converged = false)");
    } else if (fit.end == TemperatureFitResult::End::kInfinity) {
      report.add_warnings(
          "temperature fit: the labels score below the average logit, so the NLL keeps "
          "falling as T grows; returned the end of the range, T = 1e12 "
          "(converged = false)");
    }

    if (options_.sigmoid()) {
      const PlattFitResult platt = FitPlatt([&](double a, double b) {
        if (IsCancelled()) return PlattDerivatives{};
        PlattDerivatives d = ReduceBlocks<PlattDerivatives>(
            stored.rows,
            [&](uint64_t begin, uint64_t end) {
              return kernel_.PlattTerms(stored, begin, end, a, b);
            },
            [](PlattDerivatives& total, const PlattDerivatives& part) {
              total.value += part.value;
              total.ga += part.ga;
              total.gb += part.gb;
              total.haa += part.haa;
              total.hab += part.hab;
              total.hbb += part.hbb;
            });
        return PlattDerivatives{d.value / n, d.ga / n,  d.gb / n,
                                d.haa / n,   d.hab / n, d.hbb / n};
      });
      v1::PlattScaling* ps = report.mutable_platt_scaling();
      ps->set_slope(platt.slope);
      ps->set_intercept(platt.intercept);
      ps->set_iterations(platt.iterations);
      ps->set_converged(platt.converged);
      CALIB_RETURN_IF_ERROR(
          Recompute({platt.slope, platt.intercept}, ps->mutable_calibrated()));
      if (!platt.converged) {
        report.add_warnings(
            "Platt fit did not converge: the classes may be separable by the logit, so "
            "the likelihood has no finite maximum");
      }
    }
  }
  return report;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Evaluator>> Evaluator::Create(
    const v1::EvaluationConfig& config, const StoreLimits& limits) {
  CALIB_ASSIGN_OR_RETURN(Options options, ResolveOptions(config));
  // Reserved before they are built: a config can ask for gigabytes of them.
  const uint64_t alive = SumsAlive();
  uint64_t bytes = alive * SumsBytes(options);
  if (options.fit_temperature) {
    Options plain = options;  // the recomputations', without the bootstrap
    plain.bootstrap_samples = 0;
    bytes += alive * SumsBytes(plain);
  }
  if (options.smooth_ece) bytes += kSmoothEceBytes;
  auto reservation = std::make_unique<MemoryReservation>(limits.budget);
  CALIB_RETURN_IF_ERROR(reservation->Grow(
      bytes, absl::StrCat("the accumulators of num_bins ", options.num_bins,
                          options.classwise ? " x num_classes " : "",
                          options.classwise ? absl::StrCat(options.num_classes) : "",
                          " x bootstrap_samples ", options.bootstrap_samples,
                          options.smooth_ece ? " and the smooth ECE grids" : "")));
  return std::unique_ptr<Evaluator>(
      new EvaluatorImpl(options, limits, std::move(reservation)));
}

}  // namespace calib
