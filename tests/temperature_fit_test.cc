#include "src/temperature_fit.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace calib {
namespace {

using End = TemperatureFitResult::End;

// Softmax rows in float64, and the NLL of beta * z with its derivatives in beta, written
// here independently of the engine's row kernel.
struct SoftmaxData {
  int classes = 0;
  std::vector<double> logits;  // row-major, rows x classes
  std::vector<int> labels;

  NllDerivatives Eval(double beta) const {
    NllDerivatives sum;
    const size_t rows = labels.size();
    std::vector<double> p(classes);
    for (size_t i = 0; i < rows; ++i) {
      const double* z = &logits[i * classes];
      double max = beta * z[0];
      for (int j = 1; j < classes; ++j) max = std::max(max, beta * z[j]);
      double total = 0;
      for (int j = 0; j < classes; ++j) total += p[j] = std::exp(beta * z[j] - max);
      double mean = 0;
      for (int j = 0; j < classes; ++j) mean += (p[j] /= total) * z[j];
      double var = 0;
      for (int j = 0; j < classes; ++j) var += p[j] * (z[j] - mean) * (z[j] - mean);
      sum.value += max + std::log(total) - beta * z[labels[i]];
      sum.d1 += mean - z[labels[i]];
      sum.d2 += var;
    }
    sum.value /= rows;
    sum.d1 /= rows;
    sum.d2 /= rows;
    return sum;
  }
};

// Rows whose labels are drawn from softmax(base) and whose logits are scale * base,
// so the best temperature is about `scale`.
SoftmaxData MakeScaledRows(uint64_t seed, int rows, int classes, double scale) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0, 2);
  std::uniform_real_distribution<double> uniform(0, 1);
  SoftmaxData data;
  data.classes = classes;
  std::vector<double> base(classes);
  for (int i = 0; i < rows; ++i) {
    double total = 0;
    for (int j = 0; j < classes; ++j) total += std::exp(base[j] = normal(rng));
    double u = uniform(rng) * total;
    int label = classes - 1;
    for (int j = 0; j < classes; ++j) {
      u -= std::exp(base[j]);
      if (u < 0) {
        label = j;
        break;
      }
    }
    for (int j = 0; j < classes; ++j) data.logits.push_back(scale * base[j]);
    data.labels.push_back(label);
  }
  return data;
}

// Random logits whose label is the class picked by `pick` from the row.
template <typename Pick>
SoftmaxData MakeLabelledRows(uint64_t seed, int rows, int classes, Pick pick) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0, 2);
  SoftmaxData data;
  data.classes = classes;
  for (int i = 0; i < rows; ++i) {
    for (int j = 0; j < classes; ++j) data.logits.push_back(normal(rng));
    data.labels.push_back(pick(&data.logits[i * classes]));
  }
  return data;
}

// The reference: golden-section search for the smallest NLL on log T over the whole
// range, by values alone.
double GoldenSectionTemperature(const SoftmaxData& data) {
  const double inv_phi = (std::sqrt(5.0) - 1) / 2;
  auto nll = [&](double log_t) { return data.Eval(std::exp(-log_t)).value; };
  double lo = std::log(kMinTemperature);
  double hi = std::log(kMaxTemperature);
  double x1 = hi - inv_phi * (hi - lo);
  double x2 = lo + inv_phi * (hi - lo);
  double f1 = nll(x1);
  double f2 = nll(x2);
  while (hi - lo > 1e-10) {
    if (f1 < f2) {
      hi = x2;
      x2 = x1;
      f2 = f1;
      x1 = hi - inv_phi * (hi - lo);
      f1 = nll(x1);
    } else {
      lo = x1;
      x1 = x2;
      f1 = f2;
      x2 = lo + inv_phi * (hi - lo);
      f2 = nll(x2);
    }
  }
  return std::exp(0.5 * (lo + hi));
}

struct Counted {
  TemperatureFitResult fit;
  uint32_t calls = 0;
};

Counted Fit(const SoftmaxData& data) {
  Counted out;
  out.fit = FitTemperature([&](double beta) {
    ++out.calls;
    return data.Eval(beta);
  });
  return out;
}

void ExpectMatchesReference(const SoftmaxData& data, const Counted& got) {
  const double want = GoldenSectionTemperature(data);
  EXPECT_TRUE(got.fit.converged);
  EXPECT_EQ(got.fit.end, End::kInside);
  EXPECT_EQ(got.fit.iterations, got.calls);
  EXPECT_NEAR(got.fit.temperature / want, 1, 1e-6) << "want T = " << want;
  const double nll_got = data.Eval(1 / got.fit.temperature).value;
  const double nll_want = data.Eval(1 / want).value;
  EXPECT_NEAR(nll_got / nll_want, 1, 1e-12);
}

TEST(FitTemperatureTest, OverconfidentModel) {
  const SoftmaxData data = MakeScaledRows(1, 500, 5, 2.5);
  const Counted got = Fit(data);
  ExpectMatchesReference(data, got);
  EXPECT_NEAR(got.fit.temperature, 2.5, 0.5);
  EXPECT_LE(got.calls, 10u);
}

TEST(FitTemperatureTest, AGivenFirstStepSavesOneCallAndChangesNothing) {
  // The evaluator hands over eval(1) from its raw pass: the fit must go exactly as if it
  // had called eval(1) itself, one call fewer, counting the same iterations.
  for (double t : {2.5, 0.3, 1.0}) {
    const SoftmaxData data = MakeScaledRows(8, 400, 6, t);
    const Counted own = Fit(data);
    uint32_t calls = 0;
    const TemperatureFitResult given = FitTemperature(
        [&](double beta) {
          ++calls;
          EXPECT_NE(beta, 1.0) << "eval(1) was given";
          return data.Eval(beta);
        },
        data.Eval(1));
    EXPECT_EQ(given.temperature, own.fit.temperature) << "T = " << t;
    EXPECT_EQ(given.iterations, own.fit.iterations);
    EXPECT_EQ(given.converged, own.fit.converged);
    EXPECT_EQ(calls + 1, own.calls);
  }
}

TEST(FitTemperatureTest, UnderconfidentModel) {
  const SoftmaxData data = MakeScaledRows(2, 500, 5, 0.3);
  const Counted got = Fit(data);
  ExpectMatchesReference(data, got);
  EXPECT_NEAR(got.fit.temperature, 0.3, 0.1);
  EXPECT_LE(got.calls, 10u);
}

TEST(FitTemperatureTest, CalibratedModel) {
  const SoftmaxData data = MakeScaledRows(3, 2000, 10, 1);
  const Counted got = Fit(data);
  ExpectMatchesReference(data, got);
  EXPECT_LE(got.calls, 10u);
}

// Log-likelihoods spanning ten orders of magnitude: at T = 1 every row is one-hot.
TEST(FitTemperatureTest, FarAwayOptimum) {
  const SoftmaxData data = MakeScaledRows(4, 500, 5, 1e8);
  const Counted got = Fit(data);
  ExpectMatchesReference(data, got);
  EXPECT_NEAR(got.fit.temperature, 1e8, 0.5e8);
  EXPECT_LE(got.calls, 15u);
}

TEST(FitTemperatureTest, TinyLogits) {
  const SoftmaxData data = MakeScaledRows(5, 500, 5, 1e-6);
  const Counted got = Fit(data);
  ExpectMatchesReference(data, got);
  EXPECT_NEAR(got.fit.temperature, 1e-6, 0.5e-6);
  EXPECT_LE(got.calls, 15u);
}

TEST(FitTemperatureTest, EveryRowRightWithAMarginGoesToZero) {
  const SoftmaxData data = MakeLabelledRows(6, 500, 5, [](double* z) {
    const int best = static_cast<int>(std::max_element(z, z + 5) - z);
    z[best] += 1;
    return best;
  });
  ASSERT_LT(data.Eval(1).d1, 0);
  const Counted got = Fit(data);
  EXPECT_EQ(got.fit.end, End::kZero);
  EXPECT_EQ(got.fit.temperature, kMinTemperature);
  EXPECT_FALSE(got.fit.converged);
  EXPECT_EQ(got.fit.iterations, got.calls);
  EXPECT_LE(got.calls, 15u);
}

// The same at a scale where every row is one-hot on its label already at T = 1: the
// NLL is 0 there and can only stay so.
TEST(FitTemperatureTest, RowsOneHotOnTheirLabelGoToZero) {
  SoftmaxData data = MakeLabelledRows(7, 500, 5, [](double* z) {
    const int best = static_cast<int>(std::max_element(z, z + 5) - z);
    z[best] += 1;
    return best;
  });
  for (double& z : data.logits) z *= 1e4;
  ASSERT_EQ(data.Eval(1).value, 0);
  const Counted got = Fit(data);
  EXPECT_EQ(got.fit.end, End::kZero);
  EXPECT_EQ(got.fit.temperature, kMinTemperature);
  EXPECT_FALSE(got.fit.converged);
  EXPECT_EQ(got.calls, 1u);
}

// With a flat row added, T = 1 shows d1 = d2 = 0 as for flat data, but the NLL still
// falls toward T -> 0 from every smaller beta.
TEST(FitTemperatureTest, OneHotRowsAndAFlatRowGoToZero) {
  SoftmaxData data = MakeLabelledRows(7, 500, 5, [](double* z) {
    const int best = static_cast<int>(std::max_element(z, z + 5) - z);
    z[best] += 1;
    return best;
  });
  for (double& z : data.logits) z *= 1e4;
  for (int j = 0; j < 5; ++j) data.logits.push_back(0);
  data.labels.push_back(0);
  const NllDerivatives at_one = data.Eval(1);
  ASSERT_EQ(at_one.d1, 0);
  ASSERT_EQ(at_one.d2, 0);
  ASSERT_LT(data.Eval(1e-6).d1, 0);
  const Counted got = Fit(data);
  EXPECT_EQ(got.fit.end, End::kZero);
  EXPECT_EQ(got.fit.temperature, kMinTemperature);
  EXPECT_FALSE(got.fit.converged);
  EXPECT_EQ(got.calls, 2u);
}

TEST(FitTemperatureTest, LabelsOnTheLowestLogitGoToInfinity) {
  const SoftmaxData data = MakeLabelledRows(8, 500, 5, [](double* z) {
    return static_cast<int>(std::min_element(z, z + 5) - z);
  });
  ASSERT_GT(data.Eval(1 / kMaxTemperature).d1, 0);
  const Counted got = Fit(data);
  EXPECT_EQ(got.fit.end, End::kInfinity);
  EXPECT_EQ(got.fit.temperature, kMaxTemperature);
  EXPECT_FALSE(got.fit.converged);
  EXPECT_EQ(got.fit.iterations, got.calls);
  EXPECT_LE(got.calls, 15u);
}

TEST(FitTemperatureTest, FlatRowsKeepTemperatureOne) {
  SoftmaxData data = MakeLabelledRows(9, 100, 4, [](double*) { return 2; });
  std::fill(data.logits.begin(), data.logits.end(), 3.5);
  const Counted got = Fit(data);
  EXPECT_TRUE(got.fit.converged);
  EXPECT_EQ(got.fit.end, End::kInside);
  EXPECT_EQ(got.fit.temperature, 1);
  EXPECT_EQ(got.calls, 2u);
}

// The SIGMOID form: mean BCE of beta z on 0/1 targets.
TEST(FitTemperatureTest, SigmoidLogits) {
  std::mt19937_64 rng(10);
  std::normal_distribution<double> normal(0, 3);
  std::uniform_real_distribution<double> uniform(0, 1);
  std::vector<double> z(1000);
  std::vector<double> y(1000);
  for (size_t i = 0; i < z.size(); ++i) {
    const double base = normal(rng);
    y[i] = uniform(rng) < 1 / (1 + std::exp(-base)) ? 1 : 0;
    z[i] = 4 * base;
  }
  auto eval = [&](double beta) {
    NllDerivatives sum;
    for (size_t i = 0; i < z.size(); ++i) {
      const double s = beta * z[i];
      const double p = s >= 0 ? 1 / (1 + std::exp(-s)) : std::exp(s) / (1 + std::exp(s));
      sum.value += std::max(s, 0.0) - s * y[i] + std::log1p(std::exp(-std::abs(s)));
      sum.d1 += (p - y[i]) * z[i];
      sum.d2 += p * (1 - p) * z[i] * z[i];
    }
    const double n = static_cast<double>(z.size());
    return NllDerivatives{sum.value / n, sum.d1 / n, sum.d2 / n};
  };
  uint32_t calls = 0;
  const TemperatureFitResult fit = FitTemperature([&](double beta) {
    ++calls;
    return eval(beta);
  });
  // The reference: bisection on the sign of the derivative, on log T.
  double lo = std::log(kMinTemperature);
  double hi = std::log(kMaxTemperature);
  while (hi - lo > 1e-12) {
    const double mid = 0.5 * (lo + hi);
    (eval(std::exp(-mid)).d1 > 0 ? lo : hi) = mid;
  }
  EXPECT_TRUE(fit.converged);
  EXPECT_NEAR(fit.temperature / std::exp(lo), 1, 1e-8);
  EXPECT_NEAR(fit.temperature, 4, 1);
  EXPECT_LE(calls, 10u);
}

}  // namespace
}  // namespace calib
