#include "src/reliability_bins.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <utility>

#include "boost/math/policies/policy.hpp"
#include "boost/math/special_functions/beta.hpp"

namespace calib {
namespace {

// Boost's default policy throws on domain, overflow and evaluation errors. The engine
// reports errors through absl::Status and must never throw or abort from inside a oneTBB
// task, so every error class is downgraded to "set errno and return a value" (NaN for
// domain errors, the limit for overflow, the best estimate for evaluation errors). The
// caller only passes 1 <= a, 1 <= b and p in [0, 1], where none of these fire.
using NoThrowPolicy = boost::math::policies::policy<
    boost::math::policies::domain_error<boost::math::policies::errno_on_error>,
    boost::math::policies::pole_error<boost::math::policies::errno_on_error>,
    boost::math::policies::overflow_error<boost::math::policies::errno_on_error>,
    boost::math::policies::underflow_error<boost::math::policies::errno_on_error>,
    boost::math::policies::denorm_error<boost::math::policies::errno_on_error>,
    boost::math::policies::evaluation_error<boost::math::policies::errno_on_error>,
    boost::math::policies::rounding_error<boost::math::policies::errno_on_error>,
    boost::math::policies::indeterminate_result_error<
        boost::math::policies::errno_on_error>>;

double Edge(uint32_t m, uint32_t num_bins) {
  return static_cast<double>(m) / static_cast<double>(num_bins);
}

void AppendBin(const BinSums& sums, double lower, double upper, double level,
               google::protobuf::RepeatedPtrField<v1::ReliabilityBin>* out) {
  v1::ReliabilityBin* bin = out->Add();
  bin->set_lower(lower);
  bin->set_upper(upper);
  bin->set_count(sums.count);
  if (sums.count == 0) return;
  const double n = static_cast<double>(sums.count);
  bin->set_mean_confidence(sums.sum_confidence / n);
  bin->set_accuracy(static_cast<double>(sums.positives) / n);
  const auto [lo, hi] = ClopperPearson(sums.positives, sums.count, level);
  bin->set_accuracy_lower(lo);
  bin->set_accuracy_upper(hi);
}

}  // namespace

uint32_t EqualWidthBin(double c, uint32_t num_bins, bool left_closed) {
  // Also sends NaN to bin 0, so a bad value can never index out of range.
  if (num_bins <= 1 || !(c > 0)) return 0;
  const uint32_t last = num_bins - 1;
  if (c >= 1) return last;
  // c * M is within an ulp or so of the answer; the loops settle it against the very
  // edges the contract names, so values on or next to an edge land where the edges say.
  // (Under round-to-nearest the RIGHT_CLOSED upward step never fires, but it costs one
  // comparison and keeps the result right by construction rather than by that argument.)
  uint32_t m = std::min(static_cast<uint32_t>(c * num_bins), last);
  if (left_closed) {
    while (m > 0 && !(Edge(m, num_bins) <= c)) --m;
    while (m < last && Edge(m + 1, num_bins) <= c) ++m;
  } else {
    while (m > 0 && !(Edge(m, num_bins) < c)) --m;
    while (m < last && Edge(m + 1, num_bins) < c) ++m;
  }
  return m;
}

std::pair<double, double> ClopperPearson(uint64_t k, uint64_t n, double level) {
  if (n == 0) return {0, 0};
  const double alpha = 1 - level;
  const double kd = static_cast<double>(k);
  const double nd = static_cast<double>(n);
  const double lower =
      k == 0 ? 0 : boost::math::ibeta_inv(kd, nd - kd + 1, alpha / 2, NoThrowPolicy());
  const double upper =
      k >= n ? 1
             : boost::math::ibeta_inv(kd + 1, nd - kd, 1 - alpha / 2, NoThrowPolicy());
  return {lower, upper};
}

CalibrationErrors ComputeErrors(absl::Span<const BinSums> bins) {
  uint64_t total = 0;
  for (const BinSums& b : bins) total += b.count;
  CalibrationErrors errors;
  if (total == 0) return errors;
  const double total_d = static_cast<double>(total);
  double squared = 0;
  double debiased = 0;
  for (const BinSums& b : bins) {
    if (b.count == 0) continue;
    const double n = static_cast<double>(b.count);
    const double acc = static_cast<double>(b.positives) / n;
    const double gap = acc - b.sum_confidence / n;
    const double weight = n / total_d;
    errors.ece += weight * std::abs(gap);
    errors.mce = std::max(errors.mce, std::abs(gap));
    squared += weight * gap * gap;
    // Subtracting the binomial variance of acc removes the upward bias of gap^2
    // (Kumar et al. 2019); a single sample has no variance estimate, so it adds 0.
    if (b.count >= 2) debiased += weight * (gap * gap - acc * (1 - acc) / (n - 1));
  }
  errors.rms_ce = std::sqrt(squared);
  errors.debiased_rms_ce = std::sqrt(std::max(0.0, debiased));
  return errors;
}

void AppendEqualWidthBins(absl::Span<const BinSums> bins, double level,
                          google::protobuf::RepeatedPtrField<v1::ReliabilityBin>* out) {
  const uint32_t num_bins = static_cast<uint32_t>(bins.size());
  for (uint32_t m = 0; m < num_bins; ++m) {
    AppendBin(bins[m], Edge(m, num_bins), Edge(m + 1, num_bins), level, out);
  }
}

namespace {

// A key whose unsigned order is the double order, with -0 and +0 equal.
uint64_t SortKey(double x) {
  uint64_t bits;
  const double canonical = x + 0.0;  // -0 + 0 = +0
  std::memcpy(&bits, &canonical, sizeof(bits));
  return (bits >> 63) != 0 ? ~bits : bits | (uint64_t{1} << 63);
}

// Sorts by confidence, stably: the order of std::stable_sort, in O(N). Equal-mass bins
// sort every sample of the evaluation on one thread, where std::stable_sort's
// N log N comparisons took longer than the parallel row pass that made them. LSD radix
// on 11-bit digits, skipping the digits all keys share (most of the exponent's, for
// confidences in [0, 1]); `buffer` is the second half of the store's 2N reservation.
void SortByConfidence(std::vector<ConfidenceSample>& samples) {
  constexpr size_t kSmall = 2048;
  if (samples.size() < kSmall) {
    std::stable_sort(samples.begin(), samples.end(),
                     [](const ConfidenceSample& a, const ConfidenceSample& b) {
                       return a.confidence < b.confidence;
                     });
    return;
  }
  constexpr int kDigitBits = 11;
  constexpr int kPasses = (64 + kDigitBits - 1) / kDigitBits;
  constexpr size_t kBuckets = size_t{1} << kDigitBits;
  auto digit = [](uint64_t key, int pass) {
    return static_cast<size_t>((key >> (pass * kDigitBits)) & (kBuckets - 1));
  };
  std::vector<std::array<size_t, kBuckets>> counts(kPasses);
  for (auto& c : counts) c.fill(0);
  for (const ConfidenceSample& s : samples) {
    const uint64_t key = SortKey(s.confidence);
    for (int pass = 0; pass < kPasses; ++pass) ++counts[pass][digit(key, pass)];
  }
  std::vector<ConfidenceSample> buffer(samples.size());
  ConfidenceSample* from = samples.data();
  ConfidenceSample* to = buffer.data();
  const uint64_t first_key = SortKey(samples[0].confidence);
  for (int pass = 0; pass < kPasses; ++pass) {
    std::array<size_t, kBuckets>& next = counts[pass];
    if (next[digit(first_key, pass)] == samples.size()) continue;  // one digit for all
    size_t offset = 0;
    for (size_t& c : next) offset += std::exchange(c, offset);
    for (size_t i = 0; i < samples.size(); ++i) {
      to[next[digit(SortKey(from[i].confidence), pass)]++] = from[i];
    }
    std::swap(from, to);
  }
  if (from != samples.data()) std::copy(from, from + samples.size(), samples.data());
}

}  // namespace

CalibrationErrors AppendEqualMassBins(
    std::vector<ConfidenceSample>& samples, uint32_t num_bins, double level,
    google::protobuf::RepeatedPtrField<v1::ReliabilityBin>* out) {
  SortByConfidence(samples);
  if (num_bins == 0 || samples.empty()) return {};
  const size_t base = samples.size() / num_bins;
  const size_t extra = samples.size() % num_bins;
  std::vector<BinSums> bins;
  bins.reserve(std::min<size_t>(num_bins, samples.size()));
  size_t begin = 0;
  for (uint32_t m = 0; m < num_bins; ++m) {
    const size_t size = base + (m < extra ? 1 : 0);
    if (size == 0) break;  // array_split puts the empty bins last.
    BinSums sums;
    for (size_t i = begin; i < begin + size; ++i) {
      sums.count += 1;
      sums.positives += samples[i].correct;
      sums.sum_confidence += samples[i].confidence;
    }
    AppendBin(sums, samples[begin].confidence, samples[begin + size - 1].confidence,
              level, out);
    bins.push_back(sums);
    begin += size;
  }
  return ComputeErrors(bins);
}

}  // namespace calib
