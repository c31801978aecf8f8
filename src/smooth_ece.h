// Smooth ECE (Blasiok and Nakkiran 2023) as metrics.md defines it: the integral over
// [0, 1] of |kernel-smoothed residual c - a| under the reflected Gaussian kernel, at the
// bandwidth sigma* that equals its own smooth ECE. Within 1e-7 of the exact value (tests
// compare with closed-form integrals); about 20 ms for a million samples. Deterministic
// on a given CPU. Pure functions, thread-safe.
#ifndef CALIB_SRC_SMOOTH_ECE_H_
#define CALIB_SRC_SMOOTH_ECE_H_

#include "absl/types/span.h"
#include "src/reliability_bins.h"

namespace calib {

// smECE_sigma: the integral at one bandwidth sigma in (0, 1].
double SmoothEceAt(absl::Span<const ConfidenceSample> samples, double sigma);

// smECE at the fixed point sigma* = smECE_sigma* (sigma = 1 when smECE_1 >= 1).
double SmoothEce(absl::Span<const ConfidenceSample> samples);

}  // namespace calib

#endif  // CALIB_SRC_SMOOTH_ECE_H_
