// The Platt fit (metrics.md, "Platt scaling"): the maximum-likelihood (a, b) of
// p = sigmoid(a z + b) on 0/1 targets, by Newton's method with a backtracking line
// search. The data is seen only through `eval`, which computes one pass.
// Pure function of `eval`, thread-safe if `eval` is.
#ifndef CALIB_SRC_PLATT_FIT_H_
#define CALIB_SRC_PLATT_FIT_H_

#include <cstdint>
#include <functional>

namespace calib {

// Mean BCE of a z + b and its gradient and Hessian in (a, b).
struct PlattDerivatives {
  double value = 0;
  double ga = 0, gb = 0;             // mean (p - y) z, mean (p - y)
  double haa = 0, hab = 0, hbb = 0;  // mean w z^2, mean w z, mean w; w = p (1 - p)
};

struct PlattFitResult {
  double slope = 1;
  double intercept = 0;
  uint32_t iterations = 0;  // calls of eval
  bool converged = false;   // false when the data is separable or the budget ran out
};

PlattFitResult FitPlatt(const std::function<PlattDerivatives(double a, double b)>& eval);

}  // namespace calib

#endif  // CALIB_SRC_PLATT_FIT_H_
