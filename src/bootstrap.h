// The Poisson bootstrap (metrics.md, "Bootstrap intervals"): each sample enters
// replicate b with a Poisson(1) weight drawn from a counter-based generator keyed by
// (seed, sample index, b), so a replicate does not depend on threads or batch split.
// ReplicateSums accumulates, per replicate, what ece / nll / accuracy / brier need in
// O(B x bins) memory; Intervals turns them into percentile intervals. ReplicateSums is a
// plain value type (not synchronised); the functions are pure and thread-safe.
#ifndef CALIB_SRC_BOOTSTRAP_H_
#define CALIB_SRC_BOOTSTRAP_H_

#include <cstdint>
#include <vector>

#include "calib/v1/calibration.pb.h"

namespace calib {

inline constexpr uint32_t kMaxBootstrapSamples = 10000;

// The generator's key for one sample: a replicate's weight is PoissonWeight(key, b).
uint64_t SampleKey(uint64_t seed, uint64_t sample);
// A Poisson(1) draw for replicate b of the sample with `key`.
uint32_t PoissonWeight(uint64_t key, uint32_t replicate);

class ReplicateSums {
 public:
  ReplicateSums() = default;
  ReplicateSums(uint32_t replicates, uint32_t num_bins)
      : replicates_(replicates),
        num_bins_(num_bins),
        scalars_(size_t{replicates} * kScalars),
        bins_(size_t{replicates} * num_bins * 3) {}

  // Adds sample `sample` (its global index) to every replicate with its weight.
  void Add(uint64_t seed, uint64_t sample, bool correct, double nll, double brier,
           uint32_t bin, double confidence, bool positive);
  void Merge(const ReplicateSums& o);

  // Percentile intervals (numpy's linear interpolation) at `level`, over the replicates
  // with a non-zero total weight.
  v1::BootstrapIntervals Intervals(double level) const;

 private:
  static constexpr size_t kScalars = 4;  // weight, correct, nll, brier
  uint32_t replicates_ = 0;
  uint32_t num_bins_ = 0;
  std::vector<double> scalars_;  // replicate-major
  std::vector<double> bins_;     // replicate x bin x (weight, positives, confidence)
};

}  // namespace calib

#endif  // CALIB_SRC_BOOTSTRAP_H_
