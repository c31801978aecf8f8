#include "src/platt_fit.h"

#include <algorithm>
#include <cmath>

namespace calib {
namespace {

constexpr uint32_t kMaxEvaluations = 100;
// Sufficient decrease of the Armijo condition.
constexpr double kArmijo = 1e-4;
// The Newton step is taken without another pass once its decrement lambda^2 (the
// predicted fall of the value, doubled) is this small relative to the value: the
// value is then exact to rounding and the parameters to about 1e-16 relative.
constexpr double kDecrementTolerance = 1e-16;
// Non-separable data keeps a mean BCE of at least 2 log(2) / N (some positive sample
// scores no higher than some negative one, and that pair alone costs 2 log 2), so a
// value below this means the data is separable and the fit runs off to infinity; every
// probability is then already within about this much of its 0/1 target.
constexpr double kSeparableValue = 1e-15;
// Below this ratio det / (haa hbb) = 1 - corr^2 the Hessian counts as singular (z is
// constant over the samples that carry weight).
constexpr double kSingularHessian = 1e-12;

}  // namespace

PlattFitResult FitPlatt(const std::function<PlattDerivatives(double a, double b)>& eval) {
  PlattFitResult result;
  double a = 1;
  double b = 0;
  auto evaluate = [&](double at_a, double at_b) {
    ++result.iterations;
    return eval(at_a, at_b);
  };
  PlattDerivatives d = evaluate(a, b);
  for (;;) {
    if (!(d.value > kSeparableValue)) break;
    double pa;
    double pb;
    const double det = d.haa * d.hbb - d.hab * d.hab;
    if (d.haa > 0 && d.hbb > 0 && det > kSingularHessian * d.haa * d.hbb) {
      pa = -(d.hbb * d.ga - d.hab * d.gb) / det;
      pb = -(d.haa * d.gb - d.hab * d.ga) / det;
    } else {
      // The gradient lies in the span of the Hessian (both are sums over (z, 1)), so
      // the minimiser of the quadratic model along it is the pseudo-inverse Newton step.
      const double gg = d.ga * d.ga + d.gb * d.gb;
      const double ghg =
          d.haa * d.ga * d.ga + 2 * d.hab * d.ga * d.gb + d.hbb * d.gb * d.gb;
      if (ghg > 0) {
        pa = -d.ga * gg / ghg;
        pb = -d.gb * gg / ghg;
      } else {
        // Saturated: every weight underflowed, so the value is linear nearby. The
        // plain gradient then comes with the step of the Polyak rule (the value is
        // never negative).
        pa = -d.ga;
        pb = -d.gb;
      }
    }
    const double slope = d.ga * pa + d.gb * pb;
    if (-slope <= kDecrementTolerance * d.value) {
      a += pa;
      b += pb;
      result.converged = true;
      break;
    }
    if (!(slope < 0) || !std::isfinite(slope)) break;
    // Where saturated rows make the value nearly linear, the quadratic model's step
    // overshoots by orders of magnitude; the linear model reaches 0 at value / -slope.
    double t = std::min(1.0, d.value / -slope);
    bool accepted = false;
    while (result.iterations < kMaxEvaluations && t > 0) {
      const PlattDerivatives trial = evaluate(a + t * pa, b + t * pb);
      if (trial.value <= d.value + kArmijo * t * slope) {
        a += t * pa;
        b += t * pb;
        d = trial;
        accepted = true;
        break;
      }
      t *= 0.5;
    }
    if (!accepted) break;
  }
  result.slope = a;
  result.intercept = b;
  return result;
}

}  // namespace calib
