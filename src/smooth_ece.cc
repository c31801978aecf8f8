#include "src/smooth_ece.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

namespace calib {
namespace {

// The kernel is cut where phi is below 1e-22 of its peak.
constexpr double kReachSigmas = 10;
// The residuals are spread linearly onto a grid of spacing h and the integral is taken
// by the trapezoid rule on the same grid. Both errors are about h^2 / (8 sigma^2) times
// smECE_sigma, which is sigma at the fixed point, so h = sqrt(8e-6 sigma) keeps them
// near 1e-6 whatever sigma is, at a cost of about 20 sigma / h^2 = 2.5e6 kernel terms.
constexpr double kErrorTarget = 1e-6;
constexpr int kMinGrid = 256;
constexpr int kMaxGrid = 1 << 20;

}  // namespace

double SmoothEceAt(absl::Span<const ConfidenceSample> samples, double sigma) {
  const double h_wanted = std::sqrt(8 * kErrorTarget * sigma);
  const int g = std::clamp(static_cast<int>(std::ceil(1 / h_wanted)), kMinGrid, kMaxGrid);
  const double h = 1.0 / g;

  // Residual mass on grid points 0..g, spread linearly so that each sample's total and
  // mean position are kept.
  std::vector<double> w(g + 1, 0.0);
  for (const ConfidenceSample& s : samples) {
    const double x = std::clamp(s.confidence, 0.0, 1.0) * g;
    const int b = std::min(static_cast<int>(x), g - 1);
    const double frac = x - b;
    const double r = s.confidence - s.correct;
    w[b] += r * (1 - frac);
    w[b + 1] += r * frac;
  }

  // K(t_a, c_b) = kern(a - b) + kern(a + b), kern(m) = sum_k phi(m h - 2k): the images
  // at every 2k reflect the kernel at 0 and 1 (metrics.md).
  const int reach = static_cast<int>(std::ceil(kReachSigmas * sigma / h));
  const double norm = 1 / (sigma * std::sqrt(2 * std::numbers::pi));
  std::vector<double> kern(3 * g + 1);  // index m + g for m in [-g, 2g]
  const int images = static_cast<int>(std::ceil((1 + kReachSigmas * sigma) / 2)) + 1;
  for (int m = -g; m <= 2 * g; ++m) {
    double sum = 0;
    for (int k = -images; k <= images; ++k) {
      const double d = (m * h - 2 * k) / sigma;
      if (std::abs(d) <= kReachSigmas) sum += norm * std::exp(-0.5 * d * d);
    }
    kern[m + g] = sum;
  }

  const double n = static_cast<double>(samples.size());
  double integral = 0;
  for (int a = 0; a <= g; ++a) {
    double f = 0;
    // Direct term: b near a. Reflected terms: a + b near 0 or near 2g.
    for (int b = std::max(0, a - reach); b <= std::min(g, a + reach); ++b) {
      f += w[b] * kern[a - b + g];
    }
    for (int b = 0; b <= std::min(g, reach - a); ++b) f += w[b] * kern[a + b + g];
    for (int b = std::max({0, 2 * g - reach - a, reach - a + 1}); b <= g; ++b) {
      f += w[b] * kern[a + b + g];
    }
    integral += (a == 0 || a == g ? 0.5 : 1.0) * std::abs(f / n);
  }
  return integral * h;
}

double SmoothEce(absl::Span<const ConfidenceSample> samples) {
  if (samples.empty()) return 0;
  const double at_one = SmoothEceAt(samples, 1);
  if (at_one >= 1) return at_one;
  // smECE_sigma - sigma falls strictly as sigma grows, so bisect on log sigma.
  double lo = 1e-6, hi = 1;
  if (SmoothEceAt(samples, lo) <= lo) return SmoothEceAt(samples, lo);
  while (hi - lo > 1e-7 * hi) {
    const double mid = std::sqrt(lo * hi);
    (SmoothEceAt(samples, mid) > mid ? lo : hi) = mid;
  }
  return SmoothEceAt(samples, hi);
}

}  // namespace calib
