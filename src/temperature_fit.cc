#include "src/temperature_fit.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

namespace calib {
namespace {

// The search runs on u = log(beta), which makes it scale-free: g(u) = NLL(e^u) has
// g'(u) = beta d1, whose sign is the sign of d1, and d1 only grows with beta because
// NLL is convex in beta. So g has one minimum, and the sign of d1 at any point tells
// on which side of it the point lies.

// Newton's last step is taken without another pass once it is shorter than this (in
// u, so relative in T) or once the error left after it is predicted below
// kPredictedError: in quadratic convergence each step is about C times the square of
// the one before, and the error after it about C times its own square.
constexpr double kStepTolerance = 1e-9;
constexpr double kPredictedError = 1e-12;
// A bisection stops when the bracket is this narrow (relative in T).
constexpr double kBracketTolerance = 1e-12;
// A guard against endless loops; data needs a small fraction of it.
constexpr uint32_t kMaxEvaluations = 200;
// A row whose label is not the unique largest logit costs at least log 2 at every
// beta, so a mean NLL below log(2) / N means that every row is right with a margin
// and the NLL falls all the way to T -> 0. Far below that, at the level of rounding,
// d1 no longer has a reliable sign, so the value decides.
constexpr double kSharpValue = 1e-15;

// d1 == d2 == 0 exactly: every row puts all its probability on one class or is flat.
// A row sharp on a wrong class would make d1 > 0, so the rows that are not flat are
// sharp on their label, and only larger beta lowers the NLL further.
bool Saturated(const NllDerivatives& d) { return d.d1 == 0 && d.d2 == 0; }

// The Newton step in u. Below the optimum (d1 < 0) it is taken on beta, where the NLL
// is convex and close to quadratic once the distributions spread out (small beta), so
// it lands near the optimum even from far away, where g''(u) may be negative. Above it
// (d1 > 0) it is taken on u, where g''(u) = beta d1 + beta^2 d2 > 0.
std::optional<double> NewtonStep(double beta, const NllDerivatives& d) {
  double step = std::numeric_limits<double>::quiet_NaN();
  if (d.d1 < 0) {
    step = std::log1p(-d.d1 / (beta * d.d2));
  } else if (d.d1 > 0) {
    step = -d.d1 / (d.d1 + beta * d.d2);
  }
  if (!std::isfinite(step) || step == 0) return std::nullopt;
  return step;
}

bool Converged(double step, double previous_step) {
  const double length = std::abs(step);
  if (length <= kStepTolerance) return true;
  return length <= 1e-3 && previous_step != 0 &&
         length * length * length <= kPredictedError * previous_step * previous_step;
}

}  // namespace

TemperatureFitResult FitTemperature(
    const std::function<NllDerivatives(double beta)>& eval,
    std::optional<NllDerivatives> at_one) {
  using End = TemperatureFitResult::End;
  const double u_min = std::log(1 / kMaxTemperature);
  const double u_max = std::log(1 / kMinTemperature);
  TemperatureFitResult result;
  auto beta_at = [&](double u) {
    if (u <= u_min) return 1 / kMaxTemperature;
    if (u >= u_max) return 1 / kMinTemperature;
    return std::exp(u);
  };
  auto evaluate = [&](double u) {
    ++result.iterations;
    return eval(beta_at(u));
  };
  auto at_end = [&](End end) {
    result.temperature = end == End::kZero ? kMinTemperature : kMaxTemperature;
    result.end = end;
    result.converged = false;
    return result;
  };
  auto inside = [&](double u, bool converged) {
    result.temperature = std::clamp(std::exp(-u), kMinTemperature, kMaxTemperature);
    result.converged = converged;
    return result;
  };

  double u = 0;
  NllDerivatives d = at_one ? *at_one : evaluate(u);
  if (at_one) ++result.iterations;
  if (Saturated(d) && d.value >= kSharpValue) {
    // Flat rows look the same at every beta; rows sharp on their label do not at the
    // small end, where every distribution is spread out.
    if (Saturated(evaluate(u_min))) return inside(0, true);
    return at_end(End::kZero);
  }

  // d1 < 0 at lo and d1 > 0 at hi once seen; until then they are the range ends.
  double lo = u_min;
  double hi = u_max;
  bool lo_seen = false;
  bool hi_seen = false;
  double last_step = 0;      // 0 before the first step
  double last_proposal = 0;  // the previous Newton step, 0 if there was none
  for (;;) {
    if (d.value < kSharpValue || (Saturated(d) && !hi_seen)) {
      return at_end(End::kZero);
    }
    if (d.d1 == 0 && d.d2 > 0) return inside(u, true);
    const bool rising = d.d1 <= 0;  // the optimum lies at larger u
    if (rising) {
      lo = u;
      lo_seen = true;
      if (u >= u_max) return at_end(End::kZero);
    } else {
      hi = u;
      hi_seen = true;
      if (u <= u_min) return at_end(End::kInfinity);
    }
    if (result.iterations >= kMaxEvaluations) return inside(u, false);

    const std::optional<double> newton = NewtonStep(beta_at(u), d);
    if (newton && Converged(*newton, last_proposal)) return inside(u + *newton, true);
    // Newton converges fast near the optimum; far above it, where the distributions
    // are sharp, it creeps in steps of about 1 in u.
    const bool creeping =
        !newton || (last_proposal != 0 && (*newton > 0) == (last_proposal > 0) &&
                    std::abs(*newton) > 0.5 * std::abs(last_proposal));
    last_proposal = newton.value_or(0);
    const bool bracketed = rising ? hi_seen : lo_seen;
    const double limit = std::max(1.0, 2 * std::abs(last_step));
    auto within = [&](double v) { return v > lo && v < hi; };
    double next;
    if (!bracketed) {
      // Expand geometrically toward the optimum until d1 changes sign.
      next = !creeping ? u + *newton : rising ? u + limit : u - limit;
    } else if (newton && !creeping && within(u + *newton)) {
      next = u + *newton;
    } else if (newton && creeping && within(u + 2 * *newton)) {
      // A creeping Newton step falls short every time; twice it likely crosses the
      // optimum and closes the bracket tightly around it.
      next = u + 2 * *newton;
    } else {
      if (hi - lo <= kBracketTolerance) return inside(0.5 * (lo + hi), true);
      next = 0.5 * (lo + hi);
    }
    next = std::clamp(next, u_min, u_max);
    last_step = next - u;
    u = next;
    d = evaluate(u);
  }
}

}  // namespace calib
