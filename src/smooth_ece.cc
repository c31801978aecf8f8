#include "src/smooth_ece.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numbers>
#include <vector>

namespace calib {
namespace {

// The kernel is cut where phi is below 1e-22 of its peak.
constexpr double kReachSigmas = 10;
// Grids have 2^level intervals, so that a coarser one is the halving of a finer one.
// With the cubic spreading and the corrected trapezoid rule below, an evaluation errs by
// smECE_sigma times about (h / sigma)^3. At the fixed point smECE_sigma = sigma, and
// h <= min(sqrt(sigma) / 112, sigma / 8) keeps the error near 1e-8 (4e-8 at worst,
// measured against exact integrals from 1 to 20,000 samples and against finer grids);
// the cost, 10 sigma / h^2 multiply-adds, is about the same for every sigma above 5e-3.
// One evaluation at a sigma far from the fixed point, where smECE_sigma can be far above
// sigma, needs h <= sigma / 32 for 1e-7.
constexpr double kIntervalsPerRootSigma = 112;
constexpr double kSearchIntervalsPerSigma = 8;
constexpr double kIntervalsPerSigma = 32;
constexpr int kMinLevel = 8;
constexpr int kMaxLevel = 20;
// Below this a fixed point is taken as 0: smECE_sigma <= sigma there is returned as is.
constexpr double kMinSigma = 1e-6;
// SmoothEce splats first onto about as many points as there are samples, up to 2^16
// intervals: fine enough for every sigma the search visits above 1.2e-4, so that one
// pass over many samples serves the whole search, and few samples splat again if needed.
constexpr int kMaxSharedLevel = 16;
// Bracket width on log sigma at which the search stops.
constexpr double kLogSigmaTolerance = 1e-10;

// The coarsest level with at least `intervals` intervals, within bounds.
int LevelFor(double intervals) {
  int level = kMinLevel;
  while (level < kMaxLevel && std::ldexp(1.0, level) < intervals) ++level;
  return level;
}

// The level for an evaluation near the fixed point.
int SearchLevel(double sigma) {
  return LevelFor(std::max(kIntervalsPerRootSigma / std::sqrt(sigma),
                           kSearchIntervalsPerSigma / sigma));
}

// Adds mass m at grid point b of a grid of g intervals. K(t, x) = K(t, -x) = K(t, 2 - x),
// so a point just outside [0, 1] is its mirror image inside.
void AddFolded(std::vector<double>& w, int g, int b, double m) {
  w[b < 0 ? -b : b > g ? 2 * g - b : b] += m;
}

// The cubic Lagrange weights of the points b - 1 .. b + 2 for position b + u, 0 <= u <= 1
// (in grid steps). Spread with them, a mass keeps its total and its first three moments
// about any point, so the kernel summed over the points differs from K(t, x) by O(h^4)
// times the fourth derivative of K. (Two-point linear weights would add a variance
// u (1 - u) h^2: an error of O(h^2) times the second derivative.)
void CubicWeights(double u, double weights[4]) {
  const double up = u + 1, um = u - 1, um2 = u - 2;
  weights[0] = -u * um * um2 * (1.0 / 6);
  weights[1] = up * um * um2 * 0.5;
  weights[2] = -up * u * um2 * 0.5;
  weights[3] = up * u * um * (1.0 / 6);
}

// Adds mass m to the points b - 1 .. b + 2 with the given weights.
void AddCubic(std::vector<double>& w, int g, int b, const double weights[4], double m) {
  if (b >= 1 && b + 2 <= g) {
    for (int i = 0; i < 4; ++i) w[b - 1 + i] += m * weights[i];
  } else {
    for (int i = 0; i < 4; ++i) AddFolded(w, g, b - 1 + i, m * weights[i]);
  }
}

// Residual mass c - a on the points i / 2^level, i = 0..2^level.
std::vector<double> Splat(absl::Span<const ConfidenceSample> samples, int level) {
  const int g = 1 << level;
  std::vector<double> w(g + 1, 0.0);
  for (const ConfidenceSample& s : samples) {
    const double x = std::clamp(s.confidence, 0.0, 1.0) * g;
    const int b = std::min(static_cast<int>(x), g - 1);
    double weights[4];
    CubicWeights(x - b, weights);
    AddCubic(w, g, b, weights, s.confidence - s.correct);
  }
  return w;
}

// The masses on the grid of half as many intervals: an even point is a coarse point, an
// odd one sits halfway between two and is spread with the weights at u = 1/2,
// (-1, 9, 9, -1) / 16, so the coarse masses keep the same moments as the fine ones.
std::vector<double> Halve(const std::vector<double>& fine) {
  const int g = static_cast<int>(fine.size() - 1) / 2;
  double half[4];
  CubicWeights(0.5, half);
  std::vector<double> coarse(g + 1, 0.0);
  for (int b = 0; b <= g; ++b) coarse[b] = fine[2 * b];
  for (int b = 0; b < g; ++b) AddCubic(coarse, g, b, half, fine[2 * b + 1]);
  return coarse;
}

// The masses at every level up to a finest one, each made once, by halving the next
// finer level, so that a level's masses do not depend on the order of the requests.
class MassPyramid {
 public:
  MassPyramid(absl::Span<const ConfidenceSample> samples, int finest) : finest_(finest) {
    levels_.emplace(finest, Splat(samples, finest));
  }

  int finest() const { return finest_; }

  // A level above the finest gets the finest.
  const std::vector<double>& At(int level) {
    level = std::min(level, finest_);
    auto it = levels_.find(level);
    if (it == levels_.end()) it = levels_.emplace(level, Halve(At(level + 1))).first;
    return it->second;
  }

 private:
  int finest_;
  std::map<int, std::vector<double>> levels_;
};

// out[a] += p (up[a] + down[a]) for a < count, a multiple of 4: written four at a time
// so that GCC vectorises it at -O2.
void AddSymmetricTerm(double p, const double* __restrict up,
                      const double* __restrict down, int count, double* __restrict out) {
  for (int a = 0; a < count; a += 4) {
    out[a] += p * (up[a] + down[a]);
    out[a + 1] += p * (up[a + 1] + down[a + 1]);
    out[a + 2] += p * (up[a + 2] + down[a + 2]);
    out[a + 3] += p * (up[a + 3] + down[a + 3]);
  }
}

// out[a] = phi[0] c[a] + sum_{m=1..reach} phi[m] (c[a + m] + c[a - m]) for every
// a < out.size() (a multiple of 4), where c = ext + reach; each output adds its terms in
// one order. Outputs whose whole window c[a - reach .. a + reach] is 0 are 0 and are not
// summed: few samples on a fine grid (a small sigma) leave most of it empty, and summing
// it all made such a call cost seconds (found by tests/fuzz).
void ConvolveSymmetric(const std::vector<double>& ext, const std::vector<double>& phi,
                       std::vector<double>& out) {
  const int reach = static_cast<int>(phi.size()) - 1;
  const int count = static_cast<int>(out.size());
  const double* c = ext.data() + reach;
  // nonzero[j]: how many of ext[0 .. j) are not 0.
  std::vector<int> nonzero(ext.size() + 1, 0);
  for (size_t j = 0; j < ext.size(); ++j) nonzero[j + 1] = nonzero[j] + (ext[j] != 0);
  // The four outputs from a read ext[a .. a + 3 + 2 reach].
  auto active = [&](int a) { return nonzero[a + 4 + 2 * reach] != nonzero[a]; };
  std::fill(out.begin(), out.end(), 0.0);
  for (int begin = 0; begin < count;) {
    if (!active(begin)) {
      begin += 4;
      continue;
    }
    int end = begin + 4;
    while (end < count && active(end)) end += 4;
    for (int a = begin; a < end; ++a) out[a] = phi[0] * c[a];
    for (int m = 1; m <= reach; ++m) {
      AddSymmetricTerm(phi[m], c + begin + m, c + begin - m, end - begin,
                       out.data() + begin);
    }
    begin = end;
  }
}

// Integral of |f| over one grid interval, in units of h, from f's values f0, f1 at its
// ends: the integral of the linear interpolant's absolute value (the trapezoid rule
// where f keeps its sign). The interpolant exceeds f by h^2 f'' / 12 on average over an
// interval, so the sum errs by (h^2 / 12) integral sign(f) f'' = -(h^2 / 6) sum |f'| over
// the zeros of f (f' = 0 at both ends of [0, 1] by symmetry): with f' = (f1 - f0) / h,
// |f1 - f0| / 6 is added back on every interval where f changes sign.
double AbsSegment(double f0, double f1) {
  const double a0 = std::abs(f0), a1 = std::abs(f1);
  if ((f0 < 0) == (f1 < 0)) return 0.5 * (a0 + a1);
  return 0.5 * (f0 * f0 + f1 * f1) / (a0 + a1) + (a0 + a1) / 6;
}

// smECE_sigma from the residual masses w on the grid of g = w.size() - 1 intervals.
double SmoothEceOnGrid(const std::vector<double>& w, double n, double sigma) {
  const int g = static_cast<int>(w.size()) - 1;
  const double h = 1.0 / g;
  const int cut = static_cast<int>(std::ceil(kReachSigmas * sigma * g));

  // K(t, x) = sum_k phi(t - x - 2k) + phi(t + x - 2k): every mass has images at x + 2k
  // and 2k - x, so the masses extended by their images repeat with period 2g (points 0
  // and g are their own mirror images, hence doubled) and f is their convolution with
  // phi. Where phi reaches beyond a half period, the kernel is wrapped onto one period
  // instead, P(m) = sum_k phi(m - 2kg), so that no output sums more than 2g + 1 terms.
  const int reach = std::min(cut, g);
  // f is computed at g + 1 points rounded up to a multiple of 4; ext is padded to match.
  const int count = (g + 4) / 4 * 4;
  std::vector<double> ext(count + 2 * reach, 0.0);
  for (int j = -reach; j <= g + reach; ++j) {
    int p = j % (2 * g);
    if (p < 0) p += 2 * g;
    ext[j + reach] = p == 0 || p == g ? 2 * w[p] : p < g ? w[p] : w[2 * g - p];
  }
  std::vector<double> phi(reach + 1);
  const double norm = 1 / (sigma * std::sqrt(2 * std::numbers::pi));
  const int periods = cut / (2 * g) + 1;
  for (int m = 0; m <= reach; ++m) {
    double sum = 0;
    for (int k = -periods; k <= periods; ++k) {
      const int distance = std::abs(m - 2 * k * g);
      if (distance > cut) continue;
      const double d = distance * h / sigma;
      sum += norm * std::exp(-0.5 * d * d);
    }
    phi[m] = sum;
  }
  // At m = g the two terms c[a + g] and c[a - g] are one point of the period.
  if (reach == g) phi[g] *= 0.5;
  std::vector<double> f(count);
  ConvolveSymmetric(ext, phi, f);

  double integral = 0;
  for (int a = 0; a < g; ++a) integral += AbsSegment(f[a], f[a + 1]);
  return integral * h / n;
}

}  // namespace

double SmoothEceAt(absl::Span<const ConfidenceSample> samples, double sigma) {
  if (samples.empty()) return 0;
  return SmoothEceOnGrid(
      Splat(samples, std::max(SearchLevel(sigma), LevelFor(kIntervalsPerSigma / sigma))),
      samples.size(), sigma);
}

double SmoothEce(absl::Span<const ConfidenceSample> samples) {
  if (samples.empty()) return 0;
  const double n = static_cast<double>(samples.size());
  MassPyramid masses(samples, std::min(LevelFor(n), kMaxSharedLevel));
  const double at_one = SmoothEceOnGrid(masses.At(SearchLevel(1)), n, 1);
  if (at_one >= 1) return at_one;

  // smECE_sigma falls as sigma grows, so sigma* = smECE_sigma* >= smECE_1: the root of
  // excess(sigma) = smECE_sigma - sigma lies in [smECE_1, 1], and a grid fine enough for
  // smECE_1 serves every sigma the search visits.
  const double lo = std::max(at_one, kMinSigma);
  const int finest = SearchLevel(lo);
  if (finest > masses.finest()) masses = MassPyramid(samples, finest);
  auto smooth_ece_at = [&](double sigma) {
    return SmoothEceOnGrid(masses.At(SearchLevel(sigma)), n, sigma);
  };
  // smECE_lo >= lo but for rounding; otherwise the fixed point is lo itself, or lies
  // below kMinSigma.
  const double at_lo = smooth_ece_at(lo);
  if (at_lo <= lo) return at_lo;

  // Brent's method on log sigma for excess = smECE_sigma - sigma (inverse quadratic
  // interpolation or secant steps, falling back to bisection), keeping the root between
  // b, the best point, and c.
  auto excess = [&](double log_sigma) {
    const double sigma = std::exp(log_sigma);
    return smooth_ece_at(sigma) - sigma;
  };
  double a = std::log(lo), fa = at_lo - lo;
  double b = 0, fb = at_one - 1;
  double c = a, fc = fa, step = b - a, last_step = step;
  while (true) {
    if ((fb > 0) == (fc > 0)) {
      c = a, fc = fa;
      step = last_step = b - a;
    }
    if (std::abs(fc) < std::abs(fb)) {
      a = b, fa = fb;
      b = c, fb = fc;
      c = a, fc = fa;
    }
    const double tol = 0.5 * kLogSigmaTolerance;
    const double half = 0.5 * (c - b);
    if (std::abs(half) <= tol || fb == 0) break;
    if (std::abs(last_step) >= tol && std::abs(fa) > std::abs(fb)) {
      const double s = fb / fa;
      double p, q;
      if (a == c) {
        p = 2 * half * s;
        q = 1 - s;
      } else {
        const double qa = fa / fc, r = fb / fc;
        p = s * (2 * half * qa * (qa - r) - (b - a) * (r - 1));
        q = (qa - 1) * (r - 1) * (s - 1);
      }
      if (p > 0) q = -q;
      p = std::abs(p);
      if (2 * p < std::min(3 * half * q - std::abs(tol * q), std::abs(last_step * q))) {
        last_step = step;
        step = p / q;
      } else {
        step = last_step = half;
      }
    } else {
      step = last_step = half;
    }
    a = b, fa = fb;
    b += std::abs(step) > tol ? step : std::copysign(tol, half);
    fb = excess(b);
  }
  return std::exp(b) + fb;
}

}  // namespace calib
