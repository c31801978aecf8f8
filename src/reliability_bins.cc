#include "src/reliability_bins.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <utility>

#include "boost/math/policies/policy.hpp"
#include "boost/math/special_functions/beta.hpp"
#include "src/huge_pages.h"

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
  const double t = c * num_bins;
  uint32_t m = std::min(static_cast<uint32_t>(t), last);
  // Far from every edge the loops would not move m, so their divisions are skipped: t is
  // c * M to within 2^-39 (M <= kMaxBins < 2^14), and each edge m / M to within 2^-53.
  const double frac = t - std::floor(t);
  if (frac > 1e-9 && frac < 1 - 1e-9) return m;
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

// The digit of `bits` bits that MSD radix passes over samples whose keys lie in [lo, hi]
// take: its top bit is the highest bit in which lo and hi differ.
class RadixDigit {
 public:
  RadixDigit(absl::Span<const ConfidenceSample> samples, int bits)
      : mask_((size_t{1} << bits) - 1) {
    uint64_t lo = ~uint64_t{0}, hi = 0;
    for (const ConfidenceSample& s : samples) {
      const uint64_t key = SortKey(s.confidence);
      lo = std::min(lo, key);
      hi = std::max(hi, key);
    }
    all_tied_ = lo == hi;
    shift_ = std::max(0, static_cast<int>(std::bit_width(lo ^ hi)) - bits);
  }

  bool all_tied() const { return all_tied_; }
  size_t operator()(double confidence) const {
    return static_cast<size_t>(SortKey(confidence) >> shift_) & mask_;
  }

  // start[d] = how many samples have a digit below d, for d in [0, 2^bits].
  void Count(absl::Span<const ConfidenceSample> samples, size_t* start) const {
    std::fill_n(start, mask_ + 2, 0);
    for (const ConfidenceSample& s : samples) ++start[(*this)(s.confidence) + 1];
    for (size_t d = 0; d <= mask_; ++d) start[d + 1] += start[d];
  }

 private:
  size_t mask_;
  int shift_ = 0;
  bool all_tied_ = false;
};

// Insertion sort: stable, and the fastest for the few samples a radix bucket ends with.
void InsertionSort(ConfidenceSample* a, size_t n) {
  for (size_t i = 1; i < n; ++i) {
    const ConfidenceSample x = a[i];
    size_t j = i;
    for (; j > 0 && a[j - 1].confidence > x.confidence; --j) a[j] = a[j - 1];
    a[j] = x;
  }
}

// Sorts a[0, n) by confidence, stably (the order of std::stable_sort), with b[0, n) as
// scratch. Most significant digit first: one stable scatter on the highest bits in which
// the keys differ, then each bucket in turn, while it is still in cache, on the next
// bits. Each level takes at least 4 bits off the keys' spread, so at most 16 levels of
// 32 KiB of counts are on the stack.
void MsdRadixSort(ConfidenceSample* a, ConfidenceSample* b, size_t n) {
  constexpr size_t kInsertionMax = 32;
  constexpr int kMaxDigitBits = 11;
  if (n <= kInsertionMax) {
    InsertionSort(a, n);
    return;
  }
  // About 8 samples a bucket, at most 2048 buckets.
  const int digit_bits =
      std::clamp(static_cast<int>(std::bit_width(n)) - 3, 4, kMaxDigitBits);
  const absl::Span<const ConfidenceSample> samples(a, n);
  const RadixDigit digit(samples, digit_bits);
  if (digit.all_tied()) return;  // arrival order is the order
  const size_t buckets = size_t{1} << digit_bits;
  std::array<size_t, (size_t{1} << kMaxDigitBits) + 1> start;
  digit.Count(samples, start.data());
  std::array<size_t, size_t{1} << kMaxDigitBits> next;
  std::copy_n(start.begin(), buckets, next.begin());
  for (size_t i = 0; i < n; ++i) b[next[digit(a[i].confidence)]++] = a[i];
  for (size_t d = 0; d < buckets; ++d) {
    MsdRadixSort(b + start[d], a + start[d], start[d + 1] - start[d]);
  }
  std::copy_n(b, n, a);
}

// numpy.array_split's bins: the first `extra` of `base` + 1 samples, then of `base`.
struct EqualMassSplit {
  size_t base;
  size_t extra;

  EqualMassSplit(size_t n, uint32_t num_bins) : base(n / num_bins), extra(n % num_bins) {}
  size_t BinOf(size_t rank) const {
    const size_t big = extra * (base + 1);
    return rank < big ? rank / (base + 1) : extra + (rank - big) / base;
  }
};

// One equal-mass bin's sums and its smallest and largest confidence.
struct MassBin {
  BinSums sums;
  double lower = 0;
  double upper = 0;

  void Add(const ConfidenceSample& s) {
    // The first of the smallest and the last of the largest, as in the stable order (it
    // tells -0 from +0).
    if (sums.count == 0 || s.confidence < lower) lower = s.confidence;
    if (sums.count == 0 || s.confidence >= upper) upper = s.confidence;
    sums.count += 1;
    sums.positives += s.correct;
    sums.sum_confidence += s.confidence;
  }
};

// Adds sorted[i] to the bin of rank first + i.
void AddSorted(absl::Span<const ConfidenceSample> sorted, size_t first,
               const EqualMassSplit& split, std::vector<MassBin>& bins) {
  for (size_t i = 0; i < sorted.size(); ++i) bins[split.BinOf(first + i)].Add(sorted[i]);
}

// The bins of N samples, by selection rather than by sorting all N: a histogram of the
// highest 11 bits in which the confidences differ gives every bucket its ranks; a bucket
// whose ranks fall in one bin is added to it in any order, and only the few buckets
// across a boundary are gathered (stably) and sorted. When those hold more than half
// the samples (many bins, or ties piled at a boundary) all N are sorted in place instead,
// with a second N as scratch: the store reserves 2N either way.
void FillEqualMassBins(absl::Span<ConfidenceSample> samples, const EqualMassSplit& split,
                       std::vector<MassBin>& bins) {
  const size_t n = samples.size();
  auto sort_all = [&] {
    LargeVector<ConfidenceSample> scratch(n);
    MsdRadixSort(samples.data(), scratch.data(), n);
    AddSorted(samples, 0, split, bins);
  };
  constexpr int kDigitBits = 11;
  constexpr size_t kBuckets = size_t{1} << kDigitBits;
  if (n < 4 * kBuckets) return sort_all();
  const RadixDigit digit(samples, kDigitBits);
  std::vector<size_t> start(kBuckets + 1);
  digit.Count(samples, start.data());
  // Where a boundary-crossing bucket's samples go in `gathered`, kWhole for the others,
  // and the others' bin.
  constexpr size_t kWhole = ~size_t{0};
  std::vector<size_t> slot(kBuckets, kWhole);
  std::vector<size_t> bin_of(kBuckets, 0);
  size_t crossing = 0;
  for (size_t d = 0; d < kBuckets; ++d) {
    if (start[d + 1] == start[d]) continue;
    bin_of[d] = split.BinOf(start[d]);
    if (bin_of[d] != split.BinOf(start[d + 1] - 1)) {
      slot[d] = crossing;
      crossing += start[d + 1] - start[d];
    }
  }
  if (crossing > n / 2) return sort_all();
  LargeVector<ConfidenceSample> gathered(crossing);
  std::vector<size_t> first_slot(slot);
  for (const ConfidenceSample& s : samples) {
    const size_t d = digit(s.confidence);
    if (slot[d] == kWhole) {
      bins[bin_of[d]].Add(s);
    } else {
      gathered[slot[d]++] = s;
    }
  }
  LargeVector<ConfidenceSample> scratch(crossing);
  for (size_t d = 0; d < kBuckets; ++d) {
    if (first_slot[d] == kWhole) continue;
    const size_t size = start[d + 1] - start[d];
    MsdRadixSort(gathered.data() + first_slot[d], scratch.data() + first_slot[d], size);
    AddSorted(absl::MakeConstSpan(gathered).subspan(first_slot[d], size), start[d], split,
              bins);
  }
}

}  // namespace

CalibrationErrors AppendEqualMassBins(
    absl::Span<ConfidenceSample> samples, uint32_t num_bins, double level,
    google::protobuf::RepeatedPtrField<v1::ReliabilityBin>* out) {
  if (num_bins == 0 || samples.empty()) return {};
  const EqualMassSplit split(samples.size(), num_bins);
  // array_split puts the empty bins last, and they are not appended.
  std::vector<MassBin> bins(std::min<size_t>(num_bins, samples.size()));
  FillEqualMassBins(samples, split, bins);
  std::vector<BinSums> sums;
  sums.reserve(bins.size());
  for (const MassBin& bin : bins) {
    AppendBin(bin.sums, bin.lower, bin.upper, level, out);
    sums.push_back(bin.sums);
  }
  return ComputeErrors(sums);
}

}  // namespace calib
