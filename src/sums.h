// Sums: everything the metrics need from a run of rows, mergeable. A run's Sums depend
// only on its rows in order, so folding fixed blocks in index order gives the same bits
// whatever the threads or batch split. Plain value type; not synchronised.
#ifndef CALIB_SRC_SUMS_H_
#define CALIB_SRC_SUMS_H_

#include <cstdint>
#include <vector>

#include "src/bootstrap.h"
#include "src/options.h"
#include "src/reliability_bins.h"

namespace calib {

struct Sums {
  uint64_t samples = 0;
  uint64_t correct = 0;
  double nll = 0;
  double brier = 0;
  double confidence = 0;  // the mean_confidence numerator (SIGMOID: p)
  double entropy = 0;
  // The temperature fit's d1 and d2 at beta = 1 (temperature_fit.h), summed: filled by
  // the vectorised SOFTMAX raw pass when fit_temperature is set (nll is the value).
  double temperature_d1 = 0;
  double temperature_d2 = 0;
  std::vector<uint64_t> top_k;      // one count per Options::top_k
  std::vector<BinSums> bins;        // num_bins equal-width bins
  std::vector<BinSums> class_bins;  // classwise: num_classes x num_bins, class-major
  // Every value seen lies in [0, 1] (and SOFTMAX rows sum to 1).
  bool looks_like_probabilities = true;
  ReplicateSums replicates;  // bootstrap_samples > 0 only

  explicit Sums(const Options& options)
      : top_k(options.top_k.size()),
        bins(options.num_bins),
        class_bins(options.classwise ? size_t{options.num_classes} * options.num_bins
                                     : 0),
        replicates(options.bootstrap_samples > 0
                       ? ReplicateSums(options.bootstrap_samples, options.num_bins)
                       : ReplicateSums()) {}

  // Adds `o`, which must have been built with the same Options.
  void Merge(const Sums& o);
};

}  // namespace calib

#endif  // CALIB_SRC_SUMS_H_
