// Compiles row_simd-inl.h once per Highway target and dispatches to the best one the
// CPU supports (Highway 1.0.3 cannot build with -march=native, hence dynamic dispatch).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/row_simd.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "src/row_simd-inl.h"

#if HWY_ONCE
namespace calib {

HWY_EXPORT(SoftmaxRowsTarget);
HWY_EXPORT(TemperatureRowsTarget);
HWY_EXPORT(PlattSpanTarget);
HWY_EXPORT(SigmoidTermsTarget);
HWY_EXPORT(SoftmaxFinishTarget);
HWY_EXPORT(TargetNameT);

void SoftmaxRowsSimd(v1::DType dtype, const char* rows, uint64_t n, uint32_t num_classes,
                     double scale, const int32_t* rank_labels, SoftmaxRowStats* out,
                     bool moment2) {
  HWY_DYNAMIC_DISPATCH(SoftmaxRowsTarget)
  (dtype, rows, n, num_classes, scale, rank_labels, moment2, out);
}

void TemperatureRowsSimd(v1::DType dtype, const char* rows, uint64_t n,
                         uint32_t num_classes, double beta, TemperatureRowSums* out) {
  HWY_DYNAMIC_DISPATCH(TemperatureRowsTarget)(dtype, rows, n, num_classes, beta, out);
}

void PlattSpanSimd(v1::DType dtype, const char* logits, const int32_t* targets,
                   uint64_t n, double a, double b, PlattDerivatives* out) {
  HWY_DYNAMIC_DISPATCH(PlattSpanTarget)(dtype, logits, targets, n, a, b, out);
}

void SigmoidTermsSimd(const double* x, uint64_t n, SigmoidTerms* out) {
  HWY_DYNAMIC_DISPATCH(SigmoidTermsTarget)(x, n, out);
}

void SoftmaxFinishSimd(const double* rest, const double* gap, uint64_t n, double* log_sum,
                       double* e_gap) {
  HWY_DYNAMIC_DISPATCH(SoftmaxFinishTarget)(rest, gap, n, log_sum, e_gap);
}

const char* RowSimdTarget() { return HWY_DYNAMIC_DISPATCH(TargetNameT)(); }

}  // namespace calib
#endif  // HWY_ONCE
