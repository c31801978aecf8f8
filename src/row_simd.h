// The vectorised row passes (Highway, dynamic dispatch to the best target the CPU has):
// the statistics of one softmax row of logits, the terms of the temperature and Platt
// fits, reading float32, float16, bfloat16 (widened in registers) or float64 in place,
// and the exponentials of sigmoid samples. Pure functions of their arguments;
// thread-safe. row_kernel.cc turns them into metrics.
#ifndef CALIB_SRC_ROW_SIMD_H_
#define CALIB_SRC_ROW_SIMD_H_

#include <cstdint>

#include "calib/v1/calibration.pb.h"
#include "src/platt_fit.h"

namespace calib {

// What one row z of C logits, mapped by x -> scale * x, says about softmax(scale * z).
// With m = max z and e_k = exp(scale * (z_k - m)): sum_k e_k = ties + rest, where the
// `ties` values equal to m give exactly 1 each and `rest` sums the others, so that
// log sum e = log1p(ties - 1 + rest) keeps its relative precision for confident rows.
struct SoftmaxRowStats {
  bool finite = true;   // false: some value is NaN or infinite, and the rest is unset
  uint32_t argmax = 0;  // the first index holding m
  uint32_t ties = 0;    // how many values equal m (>= 1)
  double max = 0;       // m
  double min = 0;       // min z
  double rest = 0;      // sum of e_k over z_k < m
  double rest_sq = 0;   // sum of e_k^2 over z_k < m
  double sum_ed = 0;    // sum of e_k * scale * (z_k - m)
  double sum_ed2 = 0;   // sum of e_k * (scale * (z_k - m))^2, when asked for (moment2)
  // With a label l (rank requested): how many values exceed z_l and equal z_l.
  uint32_t above = 0;
  uint32_t level = 0;
};

// The stats of n consecutive rows into out[0, n): `rows` points to n * num_classes
// values of `dtype` (float32, float64, float16, bfloat16), any alignment. For row r,
// rank_labels[r] is the label to count ranks for, < 0 for none. scale > 0. `moment2`
// fills sum_ed2 when scale == 1 (the raw pass, whose sums give the temperature fit its
// first step). A row's stats do not depend on n or on the other rows.
void SoftmaxRowsSimd(v1::DType dtype, const char* rows, uint64_t n, uint32_t num_classes,
                     double scale, const int32_t* rank_labels, SoftmaxRowStats* out,
                     bool moment2 = false);

// The temperature fit's moments of one (finite) row at beta: with z' = z - max z and
// e_k = exp(beta z'_k), sum e = ties + rest as above, and sum_ez = sum e z',
// sum_ez2 = sum e z'^2.
struct TemperatureRowSums {
  double max = 0;
  uint32_t ties = 0;
  double rest = 0;
  double sum_ez = 0;
  double sum_ez2 = 0;
};

// For n consecutive rows into out[0, n), as SoftmaxRowsSimd.
void TemperatureRowsSimd(v1::DType dtype, const char* rows, uint64_t n,
                         uint32_t num_classes, double beta, TemperatureRowSums* out);

// The Platt fit's sums (platt_fit.h) over n consecutive logits of `dtype` and their
// targets (0, 1 or kIgnoredLabel, which adds nothing; so do infinite logits), at (a, b).
void PlattSpanSimd(v1::DType dtype, const char* logits, const int32_t* targets,
                   uint64_t n, double a, double b, PlattDerivatives* out);

// What a sigmoid sample's p, BCE and entropy share (row_kernel.cc), for n doubles x:
// with e = exp(-|x|), low = e / (1 + e) = sigmoid(-|x|), high = 1 / (1 + e) =
// sigmoid(|x|) and log1p_e = log1p(e), each into an array of n. Infinite or NaN x give
// e = 0.
struct SigmoidTerms {
  double* low;
  double* high;
  double* log1p_e;
};
void SigmoidTermsSimd(const double* x, uint64_t n, SigmoidTerms* out);

// For n softmax rows: log_sum = log1p(rest) (rest >= 0: the row's (ties - 1) + rest)
// and e_gap = exp(gap) (gap <= 0: the label's scaled gap below the max; 0 below
// kMinExpArg's -708, where the probability is below 1e-307).
void SoftmaxFinishSimd(const double* rest, const double* gap, uint64_t n, double* log_sum,
                       double* e_gap);

// The Highway target that the calls above now run on, e.g. "AVX3"; for tests and
// benchmarks.
const char* RowSimdTarget();

}  // namespace calib

#endif  // CALIB_SRC_ROW_SIMD_H_
