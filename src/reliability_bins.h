// Reliability bins and the calibration errors computed from them (metrics.md,
// "Reliability bins and calibration errors"): equal-width bin lookup under both edge
// conventions, Clopper-Pearson intervals, ece / mce / rms_ce / debiased_rms_ce, and
// equal-mass bins. Pure functions, thread-safe.
#ifndef CALIB_SRC_RELIABILITY_BINS_H_
#define CALIB_SRC_RELIABILITY_BINS_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "calib/v1/calibration.pb.h"
#include "google/protobuf/repeated_ptr_field.h"

namespace calib {

// What a bin accumulates. `positives` counts a = 1 (correct rows, or positive targets).
struct BinSums {
  uint64_t count = 0;
  uint64_t positives = 0;
  double sum_confidence = 0;

  void Merge(const BinSums& o) {
    count += o.count;
    positives += o.positives;
    sum_confidence += o.sum_confidence;
  }
};

// The equal-width bin of confidence c in [0, 1] among num_bins bins with edges
// e_m = m / num_bins computed in double. RIGHT_CLOSED (left_closed = false): e_m < c <=
// e_{m+1}, c = 0 in bin 0. LEFT_CLOSED: e_m <= c < e_{m+1}, c = 1 in the last bin.
uint32_t EqualWidthBin(double c, uint32_t num_bins, bool left_closed);

// Exact binomial (Clopper-Pearson) interval of k successes in n trials at `level`
// (e.g. 0.95), from Boost.Math's Beta quantile. {0, 0} when n = 0.
std::pair<double, double> ClopperPearson(uint64_t k, uint64_t n, double level);

struct CalibrationErrors {
  double ece = 0;
  double mce = 0;
  double rms_ce = 0;
  double debiased_rms_ce = 0;
};

// The errors of a set of bins whose counts sum to the sample count N.
CalibrationErrors ComputeErrors(absl::Span<const BinSums> bins);

// Appends one ReliabilityBin per element of `bins` (all of them, empty ones with count
// 0 and zeros), with edges m / M and Clopper-Pearson intervals at `level`.
void AppendEqualWidthBins(absl::Span<const BinSums> bins, double level,
                          google::protobuf::RepeatedPtrField<v1::ReliabilityBin>* out);

// One (confidence, correct) pair per sample, in the samples' global order.
struct ConfidenceSample {
  double confidence;
  uint8_t correct;  // 0 or 1
};

// Equal-mass bins: the bins of numpy.array_split over `samples` stably sorted by
// confidence (only the min(N, num_bins) non-empty ones are appended), each with
// lower/upper = its smallest/largest confidence; returns the errors of these bins (ece
// is ece_equal_mass). May reorder `samples`; needs memory for at most N more samples.
CalibrationErrors AppendEqualMassBins(
    absl::Span<ConfidenceSample> samples, uint32_t num_bins, double level,
    google::protobuf::RepeatedPtrField<v1::ReliabilityBin>* out);

}  // namespace calib

#endif  // CALIB_SRC_RELIABILITY_BINS_H_
