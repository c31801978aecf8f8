#include "src/platt_fit.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace calib {
namespace {

// Binary scores and 0/1 targets, and the mean BCE of a z + b with its gradient and
// Hessian, in float64, written here independently of the engine's row kernel.
struct BinaryData {
  std::vector<double> z;
  std::vector<double> y;

  PlattDerivatives Eval(double a, double b) const {
    PlattDerivatives sum;
    for (size_t i = 0; i < z.size(); ++i) {
      const double s = a * z[i] + b;
      const double e = std::exp(-std::abs(s));
      const double p = s >= 0 ? 1 / (1 + e) : e / (1 + e);
      const double w = e / ((1 + e) * (1 + e));
      sum.value += std::max(s, 0.0) - s * y[i] + std::log1p(e);
      sum.ga += (p - y[i]) * z[i];
      sum.gb += p - y[i];
      sum.haa += w * z[i] * z[i];
      sum.hab += w * z[i];
      sum.hbb += w;
    }
    const double n = static_cast<double>(z.size());
    return {sum.value / n, sum.ga / n, sum.gb / n, sum.haa / n, sum.hab / n, sum.hbb / n};
  }
};

// Targets drawn from sigmoid(slope * base + intercept), scores scale * base: the best
// fit is about (slope / scale, intercept).
BinaryData MakeData(uint64_t seed, int n, double slope, double intercept, double scale) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0, 2);
  std::uniform_real_distribution<double> uniform(0, 1);
  BinaryData data;
  for (int i = 0; i < n; ++i) {
    const double base = normal(rng);
    const double p = 1 / (1 + std::exp(-(slope * base + intercept)));
    data.z.push_back(scale * base);
    data.y.push_back(uniform(rng) < p ? 1 : 0);
  }
  return data;
}

// Golden-section search for the minimum of a convex function of one variable.
template <typename F>
double GoldenMin(F f, double lo, double hi, double tolerance) {
  const double inv_phi = (std::sqrt(5.0) - 1) / 2;
  double x1 = hi - inv_phi * (hi - lo);
  double x2 = lo + inv_phi * (hi - lo);
  double f1 = f(x1);
  double f2 = f(x2);
  while (hi - lo > tolerance) {
    if (f1 < f2) {
      hi = x2;
      x2 = x1;
      f2 = f1;
      x1 = hi - inv_phi * (hi - lo);
      f1 = f(x1);
    } else {
      lo = x1;
      x1 = x2;
      f1 = f2;
      x2 = lo + inv_phi * (hi - lo);
      f2 = f(x2);
    }
  }
  return 0.5 * (lo + hi);
}

// The reference: the profile min_b BCE(a, b) is convex in a; golden sections over a
// (in units of 1 / scale) and, for each a, over b, by values alone.
struct Reference {
  double slope;
  double intercept;
};

Reference BruteForce(const BinaryData& data, double scale) {
  auto best_b = [&](double a) {
    return GoldenMin([&](double b) { return data.Eval(a, b).value; }, -20, 20, 1e-10);
  };
  const double a =
      GoldenMin([&](double t) { return data.Eval(t / scale, best_b(t / scale)).value; },
                -20, 20, 1e-10);
  return {a / scale, best_b(a / scale)};
}

struct Counted {
  PlattFitResult fit;
  uint32_t calls = 0;
};

Counted Fit(const BinaryData& data) {
  Counted out;
  out.fit = FitPlatt([&](double a, double b) {
    ++out.calls;
    return data.Eval(a, b);
  });
  return out;
}

void ExpectMatchesReference(const BinaryData& data, double scale, const Counted& got) {
  const Reference want = BruteForce(data, scale);
  EXPECT_TRUE(got.fit.converged);
  EXPECT_EQ(got.fit.iterations, got.calls);
  EXPECT_NEAR(got.fit.slope * scale, want.slope * scale, 1e-6);
  EXPECT_NEAR(got.fit.intercept, want.intercept, 1e-6);
  const PlattDerivatives at_fit = data.Eval(got.fit.slope, got.fit.intercept);
  EXPECT_LE(at_fit.value, data.Eval(want.slope, want.intercept).value * (1 + 1e-13));
  // The optimality condition, independently of the reference's precision.
  EXPECT_LT(std::abs(at_fit.ga) / scale, 1e-12);
  EXPECT_LT(std::abs(at_fit.gb), 1e-12);
}

TEST(FitPlattTest, OverconfidentScores) {
  const BinaryData data = MakeData(1, 1000, 0.6, -0.4, 1);
  const Counted got = Fit(data);
  ExpectMatchesReference(data, 1, got);
  EXPECT_NEAR(got.fit.slope, 0.6, 0.15);
  EXPECT_NEAR(got.fit.intercept, -0.4, 0.25);
  EXPECT_LE(got.calls, 10u);
}

TEST(FitPlattTest, UnderconfidentShiftedScores) {
  const BinaryData data = MakeData(2, 1000, 3, 1.5, 1);
  const Counted got = Fit(data);
  ExpectMatchesReference(data, 1, got);
  EXPECT_LE(got.calls, 10u);
}

// Scores of a generative model, in the tens of millions: at (1, 0) every weight
// p (1 - p) underflows.
TEST(FitPlattTest, HugeScores) {
  const BinaryData data = MakeData(3, 1000, 0.8, 0.3, 1e7);
  ASSERT_EQ(data.Eval(1, 0).haa, 0);
  const Counted got = Fit(data);
  ExpectMatchesReference(data, 1e7, got);
  EXPECT_LE(got.calls, 50u);
}

TEST(FitPlattTest, TinyScores) {
  const BinaryData data = MakeData(4, 1000, 1.2, -0.2, 1e-6);
  const Counted got = Fit(data);
  ExpectMatchesReference(data, 1e-6, got);
  EXPECT_LE(got.calls, 50u);
}

// Every positive scores above every negative: the likelihood grows without bound.
TEST(FitPlattTest, SeparableDataDoesNotConverge) {
  BinaryData data = MakeData(5, 500, 1, 0, 1);
  for (size_t i = 0; i < data.z.size(); ++i) data.y[i] = data.z[i] > 0.5 ? 1 : 0;
  const Counted got = Fit(data);
  EXPECT_FALSE(got.fit.converged);
  EXPECT_EQ(got.fit.iterations, got.calls);
  EXPECT_LE(got.calls, 100u);
  EXPECT_GT(got.fit.slope, 1);
  // The fitted boundary -b / a separates the two classes.
  const double boundary = -got.fit.intercept / got.fit.slope;
  for (size_t i = 0; i < data.z.size(); ++i) {
    EXPECT_EQ(data.z[i] > boundary, data.y[i] == 1) << data.z[i];
  }
  EXPECT_LT(data.Eval(got.fit.slope, got.fit.intercept).value, 1e-12);
}

// All scores zero: the slope does nothing and the intercept is the log-odds of the base
// rate.
TEST(FitPlattTest, ConstantZeroScores) {
  BinaryData data = MakeData(6, 400, 0.5, 0.7, 1);
  std::fill(data.z.begin(), data.z.end(), 0);
  const double rate =
      std::count(data.y.begin(), data.y.end(), 1.0) / static_cast<double>(data.y.size());
  const Counted got = Fit(data);
  EXPECT_TRUE(got.fit.converged);
  EXPECT_NEAR(got.fit.intercept, std::log(rate / (1 - rate)), 1e-12);
  EXPECT_LE(got.calls, 10u);
}

// A single nonzero score value: only a z + b is determined, and it must be the log-odds
// of the base rate.
TEST(FitPlattTest, ConstantScores) {
  BinaryData data = MakeData(7, 400, 0.5, -0.3, 1);
  std::fill(data.z.begin(), data.z.end(), 2.5);
  const double rate =
      std::count(data.y.begin(), data.y.end(), 1.0) / static_cast<double>(data.y.size());
  const Counted got = Fit(data);
  EXPECT_TRUE(got.fit.converged);
  EXPECT_NEAR(2.5 * got.fit.slope + got.fit.intercept, std::log(rate / (1 - rate)),
              1e-12);
  EXPECT_LE(got.calls, 10u);
}

}  // namespace
}  // namespace calib
