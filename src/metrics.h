// BuildMetrics: the Metrics message (metrics.md) from accumulated Sums and the
// per-sample (confidence, correct) pairs. Pure function, thread-safe.
#ifndef CALIB_SRC_METRICS_H_
#define CALIB_SRC_METRICS_H_

#include "absl/types/span.h"
#include "calib/v1/calibration.pb.h"
#include "src/options.h"
#include "src/reliability_bins.h"
#include "src/sums.h"

namespace calib {

// `samples` holds one pair per sample in global order; it may be reordered on return.
// sums.samples must be > 0.
void BuildMetrics(const Options& options, const Sums& sums,
                  absl::Span<ConfidenceSample> samples, v1::Metrics* out);

}  // namespace calib

#endif  // CALIB_SRC_METRICS_H_
