#include "src/platt_fit.h"

#include <algorithm>
#include <cmath>

namespace calib {
namespace {

constexpr uint32_t kMaxEvaluations = 100;
// Sufficient decrease of the Armijo condition.
constexpr double kArmijo = 1e-4;
// The Newton step is taken without another pass once its decrement lambda^2 (twice
// the predicted fall of the value) is this small relative to the value: the step is
// then about 1e-6 of the parameters' scale, and the error left after it, of the order
// of its square, about 1e-12. Much smaller decrements drown in the value's rounding.
constexpr double kDecrementTolerance = 1e-12;
// A line search that needs more halvings than this is defeated by rounding.
constexpr int kMaxHalvings = 30;
// Non-separable data keeps a mean BCE of at least 2 log(2) / N (some positive sample
// scores no higher than some negative one, and that pair alone costs 2 log 2), so a
// value below this means the data is separable and the fit runs off to infinity; every
// probability is then already within about this much of its 0/1 target.
constexpr double kSeparableValue = 1e-15;
// Below this ratio det / (haa hbb) = 1 - corr^2 the Hessian counts as singular (z is
// constant over the samples that carry weight).
constexpr double kSingularHessian = 1e-12;

struct Step {
  double a;
  double b;
};

// Newton's step; where the Hessian is singular (z constant over the rows that carry
// weight, so the gradient lies in its span) the minimiser of the quadratic model along
// the gradient, which is then the pseudo-inverse Newton step; where every weight has
// underflowed (the value is locally linear) or either overflows, the plain gradient,
// which the line search scales.
Step Direction(const PlattDerivatives& d) {
  const double det = d.haa * d.hbb - d.hab * d.hab;
  Step step{-d.ga, -d.gb};
  if (d.haa > 0 && d.hbb > 0 && det > kSingularHessian * d.haa * d.hbb) {
    step = {-(d.hbb * d.ga - d.hab * d.gb) / det, -(d.haa * d.gb - d.hab * d.ga) / det};
  } else {
    const double gg = d.ga * d.ga + d.gb * d.gb;
    const double ghg =
        d.haa * d.ga * d.ga + 2 * d.hab * d.ga * d.gb + d.hbb * d.gb * d.gb;
    if (ghg > 0) step = {-d.ga * (gg / ghg), -d.gb * (gg / ghg)};
  }
  const double slope = d.ga * step.a + d.gb * step.b;
  if (!std::isfinite(slope)) return {-d.ga, -d.gb};
  return step;
}

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
    const auto [pa, pb] = Direction(d);
    const double slope = d.ga * pa + d.gb * pb;
    if (-slope <= kDecrementTolerance * d.value) {
      a += pa;
      b += pb;
      result.converged = true;
      break;
    }
    if (!(slope < 0) || !std::isfinite(slope)) break;
    // Where saturated rows make the value nearly linear, the quadratic model's step
    // overshoots by orders of magnitude. The value is never negative, and the linear
    // model reaches 0 at value / -slope (Polyak's step).
    double t = std::min(1.0, d.value / -slope);
    bool accepted = false;
    for (int halvings = 0;
         halvings <= kMaxHalvings && result.iterations < kMaxEvaluations; ++halvings) {
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
