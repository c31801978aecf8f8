// The vectorised row passes (src/row_simd.h) on every Highway target this CPU runs,
// against float64 sums computed here one value at a time.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hwy/targets.h"
#include "src/row_simd.h"
#include "src/tensor.h"

namespace calib {
namespace {

// One row in the bytes of `dtype` and the values those bytes mean.
struct Row {
  v1::DType dtype;
  std::string bytes;
  std::vector<double> z;
};

// Rounds each value to the dtype; float16 / bfloat16 keep the top bits of a float.
Row Encode(v1::DType dtype, const std::vector<double>& values) {
  Row row{dtype, {}, {}};
  for (double v : values) {
    const float f = static_cast<float>(v);
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    switch (dtype) {
      case v1::DTYPE_FLOAT64:
        row.bytes.append(reinterpret_cast<const char*>(&v), 8);
        row.z.push_back(v);
        break;
      case v1::DTYPE_BFLOAT16: {
        const uint16_t b = static_cast<uint16_t>(bits >> 16);
        row.bytes.append(reinterpret_cast<const char*>(&b), 2);
        row.z.push_back(BFloat16ToFloat(b));
        break;
      }
      case v1::DTYPE_FLOAT16: {
        // Finite values in float16's range, by its sign, exponent and mantissa fields.
        const double a = std::min(std::abs(v), 60000.0);
        int e = a == 0 ? -15
                       : std::clamp(static_cast<int>(std::floor(std::log2(a))), -14, 15);
        const uint16_t mant = static_cast<uint16_t>(
            a == 0 ? 0
                   : std::min(1023.0, std::floor((a / std::ldexp(1.0, e) - 1) * 1024)));
        const uint16_t h = static_cast<uint16_t>((v < 0 ? 0x8000 : 0) |
                                                 (a == 0 ? 0 : (e + 15) << 10) | mant);
        row.bytes.append(reinterpret_cast<const char*>(&h), 2);
        row.z.push_back(HalfToFloat(h));
        break;
      }
      default:
        row.bytes.append(reinterpret_cast<const char*>(&f), 4);
        row.z.push_back(f);
        break;
    }
  }
  return row;
}

constexpr int32_t kNoRank = -1;

void ExpectNear(double actual, long double expected, double rel,
                const std::string& what) {
  EXPECT_LE(std::abs(actual - expected), rel * std::abs(expected) + 1e-300)
      << what << ": got " << actual << ", expected " << static_cast<double>(expected);
}

// A sum of c same-signed terms: each within 6e-13 (e^2 doubles exp's 3e-13), and summing
// in double adds at most (c - 1) rounding errors of 2^-53 (the fallback sums in one
// lane).
double Tolerance(uint32_t c) { return 6e-13 + c * 0x1p-53; }

// One row's stats against float64 sums computed here.
void CheckSoftmaxRow(const Row& row, double scale, int32_t label, bool moment2,
                     const SoftmaxRowStats& st, const std::string& where) {
  const auto& z = row.z;
  const uint32_t c = static_cast<uint32_t>(z.size());
  ASSERT_TRUE(st.finite) << where;
  const double m = *std::max_element(z.begin(), z.end());
  const uint32_t argmax =
      static_cast<uint32_t>(std::max_element(z.begin(), z.end()) - z.begin());
  long double rest = 0, rest_sq = 0, sum_ed = 0, sum_ed2 = 0;
  uint32_t ties = 0, above = 0, level = 0;
  for (uint32_t k = 0; k < c; ++k) {
    const long double d = scale * (z[k] - m);
    if (z[k] == m) {
      ++ties;
    } else {
      const long double e = std::exp(d);
      rest += e;
      rest_sq += e * e;
      sum_ed += e * d;
      sum_ed2 += e * d * d;
    }
    if (label >= 0) {
      above += z[k] > z[label];
      level += z[k] == z[label];
    }
  }
  EXPECT_EQ(st.max, m) << where;
  EXPECT_EQ(st.min, *std::min_element(z.begin(), z.end())) << where;
  EXPECT_EQ(st.argmax, argmax) << where;
  EXPECT_EQ(st.ties, ties) << where;
  ExpectNear(st.rest, rest, Tolerance(c), where + " rest");
  ExpectNear(st.rest_sq, rest_sq, Tolerance(c), where + " rest_sq");
  ExpectNear(st.sum_ed, sum_ed, Tolerance(c), where + " sum_ed");
  if (moment2) ExpectNear(st.sum_ed2, sum_ed2, Tolerance(c), where + " sum_ed2");
  if (label >= 0) {
    EXPECT_EQ(st.above, above) << where;
    EXPECT_EQ(st.level, level) << where;
  }
}

std::string Concat(const std::vector<Row>& rows) {
  std::string bytes;
  for (const Row& row : rows) bytes += row.bytes;
  return bytes;
}

// Rows of one dtype and width in one call (a row a lane below kNarrowClasses): each
// row's stats must be its own, whatever its neighbours.
void CheckSoftmax(const std::vector<Row>& rows, double scale,
                  const std::vector<int32_t>& labels, const std::string& where) {
  const std::string bytes = Concat(rows);
  const uint32_t c = static_cast<uint32_t>(rows[0].z.size());
  std::vector<SoftmaxRowStats> stats(rows.size());
  // The second moment is asked for (and checked) in the unscaled pass only.
  const bool moment2 = scale == 1;
  SoftmaxRowsSimd(rows[0].dtype, bytes.data(), rows.size(), c, scale, labels.data(),
                  stats.data(), moment2);
  for (size_t i = 0; i < rows.size(); ++i) {
    CheckSoftmaxRow(rows[i], scale, labels[i], moment2, stats[i],
                    where + " row " + std::to_string(i));
  }
}

void CheckTemperatureRow(const Row& row, double beta, const TemperatureRowSums& t,
                         const std::string& where) {
  const auto& z = row.z;
  const uint32_t c = static_cast<uint32_t>(z.size());
  const double m = *std::max_element(z.begin(), z.end());
  long double rest = 0, ez = 0, ez2 = 0;
  uint32_t ties = 0;
  for (double v : z) {
    const long double g = v - m;
    const long double e = std::exp(beta * g);
    if (v == m) {
      ++ties;
    } else {
      rest += e;
    }
    ez += e * g;
    ez2 += e * g * g;
  }
  EXPECT_EQ(t.max, m) << where;
  EXPECT_EQ(t.ties, ties) << where;
  ExpectNear(t.rest, rest, Tolerance(c), where + " rest");
  ExpectNear(t.sum_ez, ez, Tolerance(c), where + " sum_ez");
  ExpectNear(t.sum_ez2, ez2, Tolerance(c), where + " sum_ez2");
}

// As CheckSoftmax: rows in one call, each checked alone.
void CheckTemperature(const std::vector<Row>& rows, double beta,
                      const std::string& where) {
  const std::string bytes = Concat(rows);
  const uint32_t c = static_cast<uint32_t>(rows[0].z.size());
  std::vector<TemperatureRowSums> sums(rows.size());
  TemperatureRowsSimd(rows[0].dtype, bytes.data(), rows.size(), c, beta, sums.data());
  for (size_t i = 0; i < rows.size(); ++i) {
    CheckTemperatureRow(rows[i], beta, sums[i], where + " row " + std::to_string(i));
  }
}

// Restores the real CPU's targets however the test ends.
struct TargetScope {
  explicit TargetScope(int64_t target) { hwy::SetSupportedTargetsForTest(target); }
  ~TargetScope() { hwy::SetSupportedTargetsForTest(0); }
};

constexpr v1::DType kDTypes[] = {v1::DTYPE_FLOAT32, v1::DTYPE_FLOAT16, v1::DTYPE_BFLOAT16,
                                 v1::DTYPE_FLOAT64};

TEST(RowKernelTest, EveryTargetMatchesFloat64) {
  const std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  ASSERT_GE(targets.size(), 2u);  // at least one vector target besides the fallback
  for (int64_t target : targets) {
    TargetScope scope(target);
    ASSERT_STREQ(RowSimdTarget(), hwy::TargetName(target));
    std::mt19937_64 rng(7);
    std::vector<uint32_t> sizes;
    for (uint32_t c = 1; c <= 17; ++c) sizes.push_back(c);
    // Around the narrow rows' limit, and wide rows.
    for (uint32_t c : {23u, 24u, 25u, 32u, 33u, 1000u, 50257u}) sizes.push_back(c);
    for (uint32_t c : sizes) {
      for (v1::DType dtype : kDTypes) {
        // Rows of every kind mixed in one call, 11 or 7 of them: not a whole number of
        // vectors on any target.
        std::vector<Row> rows;
        std::vector<int32_t> labels;
        const int count = c < 1000 ? 11 : 7;
        for (int i = 0; i < count; ++i) {
          const int kind = i % 4;
          std::normal_distribution<double> normal(0, 4);
          std::vector<double> values(c);
          for (double& v : values) v = normal(rng);
          if (kind == 1) {  // integer logits: ties everywhere, max repeated
            for (double& v : values) v = std::round(v / 4);
          } else if (kind == 2) {  // huge logits: gaps far past exp's range
            for (double& v : values) v *= 750;
          } else if (kind == 3) {  // a very confident row
            values[rng() % c] = 40;
          }
          rows.push_back(Encode(dtype, values));
          // Every third row without rank counts.
          labels.push_back(i % 3 == 2 ? -1 : static_cast<int32_t>(rng() % c));
        }
        const std::string where = std::string(hwy::TargetName(target)) +
                                  " C=" + std::to_string(c) +
                                  " dtype=" + std::to_string(dtype);
        CheckSoftmax(rows, 1.0, labels, where);
        CheckSoftmax(rows, 0.37, labels, where + " scale 0.37");
        CheckSoftmax(rows, 1e-9, labels, where + " scale 1e-9");
        CheckTemperature(rows, 1.0, where);
        CheckTemperature(rows, 3.1, where + " beta 3.1");
        CheckTemperature(rows, 1e-6, where + " beta 1e-6");
      }
    }
  }
}

// The pass's exp, alone: a row {0, x} leaves rest = e^x. Checked against long double
// at every x the kernel can meet, with lanes of a vector at different points of the
// reduction, within the 3e-13 its comment promises.
TEST(RowKernelTest, ExpIsAccurateOverItsWholeRange) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    TargetScope scope(target);
    std::mt19937_64 rng(11);
    std::uniform_real_distribution<double> wide(-708, 0), narrow(-1, 0);
    double worst = 0, worst_x = 0;
    for (int i = 0; i < 200000; ++i) {
      const double x = i % 2 == 0 ? wide(rng) : narrow(rng) * std::ldexp(1.0, -(i % 60));
      if (x == 0) continue;
      const double values[2] = {0, x};
      SoftmaxRowStats st;
      SoftmaxRowsSimd(v1::DTYPE_FLOAT64, reinterpret_cast<const char*>(values), 1, 2, 1.0,
                      &kNoRank, &st);
      const long double expected = std::exp(static_cast<long double>(x));
      const double error = static_cast<double>(std::abs((st.rest - expected) / expected));
      if (error > worst) worst = error, worst_x = x;
    }
    EXPECT_LE(worst, 3e-13) << hwy::TargetName(target) << " at x = " << worst_x;
  }
}

// The Platt sums against long double, term by term.
void CheckPlatt(const Row& row, const std::vector<int32_t>& targets, double a, double b,
                const std::string& where) {
  PlattDerivatives got;
  PlattSpanSimd(row.dtype, row.bytes.data(), targets.data(), targets.size(), a, b, &got);
  long double value = 0, ga = 0, gb = 0, haa = 0, hab = 0, hbb = 0;
  long double abs_value = 0, abs_ga = 0, abs_gb = 0, abs_haa = 0, abs_hab = 0;
  for (size_t k = 0; k < targets.size(); ++k) {
    const long double z = row.z[k];
    if (targets[k] < 0 || std::isinf(z)) continue;
    const long double x = a * z + b, y = targets[k];
    // p and 1 - p each from e^-|x|, so that neither loses digits near 0 or 1.
    const long double e = std::exp(-std::abs(x));
    const long double p = x >= 0 ? 1 / (1 + e) : e / (1 + e);
    const long double q = x >= 0 ? e / (1 + e) : 1 / (1 + e);
    const long double w = e / ((1 + e) * (1 + e));
    const long double loss = std::max(x, 0.0L) - x * y + std::log1p(e);
    const long double residual = y == 1 ? -q : p;
    value += loss, ga += residual * z, gb += residual;
    haa += w * z * z, hab += w * z, hbb += w;
    // Signed sums are checked against the sum of their terms' sizes.
    abs_value += loss, abs_ga += std::abs(residual * z), abs_gb += std::abs(residual);
    abs_haa += w * z * z, abs_hab += std::abs(w * z);
  }
  const double tol = Tolerance(static_cast<uint32_t>(targets.size()));
  EXPECT_LE(std::abs(got.value - value), tol * abs_value + 1e-300) << where << " value";
  EXPECT_LE(std::abs(got.ga - ga), tol * abs_ga + 1e-300) << where << " ga";
  EXPECT_LE(std::abs(got.gb - gb), tol * abs_gb + 1e-300) << where << " gb";
  EXPECT_LE(std::abs(got.haa - haa), tol * abs_haa + 1e-300) << where << " haa";
  EXPECT_LE(std::abs(got.hab - hab), tol * abs_hab + 1e-300) << where << " hab";
  EXPECT_LE(std::abs(got.hbb - hbb), tol * hbb + 1e-300) << where << " hbb";
}

TEST(RowKernelTest, PlattSumsMatchLongDoubleOnEveryTarget) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    TargetScope scope(target);
    std::mt19937_64 rng(5);
    for (uint32_t n : {1u, 2u, 3u, 5u, 8u, 13u, 17u, 1000u}) {
      for (v1::DType dtype : kDTypes) {
        for (int kind = 0; kind < 3; ++kind) {
          std::normal_distribution<double> normal(0, 3);
          std::vector<double> values(n);
          std::vector<int32_t> targets(n);
          for (uint32_t k = 0; k < n; ++k) {
            values[k] = normal(rng) * (kind == 1 ? 400 : 1);   // kind 1: far past exp
            targets[k] = static_cast<int32_t>(rng() % 3) - 1;  // -1: ignored
          }
          if (kind == 2) {  // infinite logits are skipped, whatever their target
            values[rng() % n] = std::numeric_limits<double>::infinity();
            values[rng() % n] = -std::numeric_limits<double>::infinity();
          }
          const Row row = Encode(dtype, values);
          const std::string where =
              std::string(hwy::TargetName(target)) + " n=" + std::to_string(n) +
              " dtype=" + std::to_string(dtype) + " kind=" + std::to_string(kind);
          CheckPlatt(row, targets, 1.0, 0.0, where);
          CheckPlatt(row, targets, -2.5, 0.7, where + " a=-2.5 b=0.7");
          CheckPlatt(row, targets, 1e3, -4.0, where + " a=1e3 b=-4");
        }
      }
    }
  }
}

TEST(RowKernelTest, SigmoidTermsMatchLongDoubleOnEveryTarget) {
  // Each term within a few ulps plus the exp's 3e-13 (and, for subnormal results, within
  // the subnormal spacing), at every length around the vector width (the tail goes
  // through a padded copy), for |x| from 0 through the subnormal sigmoids of x in
  // (-745, -708] and past them, and e = 0 for infinite or NaN x.
  constexpr double kInf = std::numeric_limits<double>::infinity();
  constexpr double kTiny = std::numeric_limits<double>::denorm_min();
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    TargetScope scope(target);
    std::mt19937_64 rng(23);
    std::normal_distribution<double> normal(0, 1);
    for (uint32_t n : {1u, 2u, 3u, 5u, 8u, 13u, 1000u}) {
      std::vector<double> x(n);
      for (uint32_t k = 0; k < n; ++k) {
        x[k] = normal(rng) * std::ldexp(1.0, static_cast<int>(rng() % 14) - 4);
      }
      if (n >= 13) {
        const double special[] = {
            0,       709,    -kInf,  std::numeric_limits<double>::quiet_NaN(),
            -1e-300, -708.5, -710,   720,
            -744,    -745.5, -748.5, 1e4,
            kInf};
        std::copy(std::begin(special), std::end(special), x.begin());
      }
      std::vector<double> low(n), high(n), log1p_e(n);
      SigmoidTerms terms{low.data(), high.data(), log1p_e.data()};
      SigmoidTermsSimd(x.data(), n, &terms);
      for (uint32_t k = 0; k < n; ++k) {
        const std::string where = std::string(hwy::TargetName(target)) +
                                  " n=" + std::to_string(n) +
                                  " x=" + std::to_string(x[k]);
        const long double e =
            std::isnan(x[k]) ? 0.0L : std::exp(-std::abs(static_cast<long double>(x[k])));
        // The nearest doubles, as a correctly rounded computation would give.
        const double want_low = static_cast<double>(e / (1 + e));
        const double want_high = static_cast<double>(1 / (1 + e));
        const double want_log = static_cast<double>(std::log1p(e));
        EXPECT_LE(std::abs(low[k] - want_low), 4e-13 * want_low + kTiny)
            << where << " low";
        EXPECT_LE(std::abs(high[k] - want_high), 4e-13 * want_high) << where << " high";
        EXPECT_LE(std::abs(log1p_e[k] - want_log), 4e-13 * want_log + kTiny)
            << where << " log1p";
      }
    }
  }
}

TEST(RowKernelTest, SoftmaxFinishMatchesLongDoubleOnEveryTarget) {
  // log1p(rest) for rest from 0 (one sure class) to ~C, and exp(gap) from 0 down past
  // the exp's range (where it gives 0), at every length around the vector width.
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    TargetScope scope(target);
    std::mt19937_64 rng(29);
    std::uniform_real_distribution<double> unit(0, 1);
    for (uint32_t n : {1u, 2u, 3u, 5u, 8u, 13u, 1000u}) {
      std::vector<double> rest(n), gap(n);
      for (uint32_t k = 0; k < n; ++k) {
        rest[k] = std::ldexp(unit(rng), static_cast<int>(rng() % 80) - 60);
        gap[k] = -std::ldexp(unit(rng), static_cast<int>(rng() % 70) - 60);
      }
      if (n >= 5) {
        rest[0] = 0, gap[0] = 0;
        rest[1] = 1e-300, gap[1] = -708;
        gap[2] = -708.5;
        gap[3] = -1e4;
      }
      std::vector<double> log_sum(n), e_gap(n);
      SoftmaxFinishSimd(rest.data(), gap.data(), n, log_sum.data(), e_gap.data());
      for (uint32_t k = 0; k < n; ++k) {
        const std::string where = std::string(hwy::TargetName(target)) +
                                  " n=" + std::to_string(n) + " k=" + std::to_string(k);
        const long double want_log = std::log1p(static_cast<long double>(rest[k]));
        const long double want_e =
            gap[k] >= -708 ? std::exp(static_cast<long double>(gap[k])) : 0.0L;
        EXPECT_LE(std::abs(log_sum[k] - want_log), 4e-16 * want_log) << where << " log";
        EXPECT_LE(std::abs(e_gap[k] - want_e), 3e-13 * want_e) << where << " exp";
      }
    }
  }
}

// float16 and bfloat16 take their max and min on the raw 16-bit patterns: random
// patterns (both zeros, subnormals, the largest finite values) in rows of every length
// around the vectors of 16-bit lanes, against the decoded values' max and min; a NaN or
// an infinity anywhere is flagged.
TEST(RowKernelTest, HalfMaxAndMinMatchTheDecodedValuesOnEveryTarget) {
  struct Half {
    v1::DType dtype;
    float (*decode)(uint16_t);
  };
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    TargetScope scope(target);
    std::mt19937 rng(11);
    for (const Half& half : {Half{v1::DTYPE_FLOAT16, HalfToFloat},
                             Half{v1::DTYPE_BFLOAT16, BFloat16ToFloat}}) {
      for (uint32_t c = 1; c <= 140; ++c) {
        std::vector<uint16_t> bits(c);
        std::vector<float> values(c);
        for (uint32_t k = 0; k < c; ++k) {
          do {
            bits[k] = static_cast<uint16_t>(rng());
            if (rng() % 8 == 0) bits[k] &= 0x8000;  // a zero of either sign
            values[k] = half.decode(bits[k]);
          } while (!std::isfinite(values[k]));
        }
        const std::string where = std::string(hwy::TargetName(target)) +
                                  " dtype=" + std::to_string(half.dtype) +
                                  " C=" + std::to_string(c);
        SoftmaxRowStats st;
        SoftmaxRowsSimd(half.dtype, reinterpret_cast<const char*>(bits.data()), 1, c, 1.0,
                        &kNoRank, &st);
        ASSERT_TRUE(st.finite) << where;
        EXPECT_EQ(st.max, *std::max_element(values.begin(), values.end())) << where;
        EXPECT_EQ(st.min, *std::min_element(values.begin(), values.end())) << where;
        // NaN (either sign), then the infinities.
        const uint16_t exponent = half.dtype == v1::DTYPE_FLOAT16 ? 0x7C00 : 0x7F80;
        for (uint16_t bad : {static_cast<uint16_t>(exponent | 1),
                             static_cast<uint16_t>(0x8000 | exponent | 1), exponent,
                             static_cast<uint16_t>(0x8000 | exponent)}) {
          std::vector<uint16_t> with_bad = bits;
          with_bad[rng() % c] = bad;
          SoftmaxRowsSimd(half.dtype, reinterpret_cast<const char*>(with_bad.data()), 1,
                          c, 1.0, &kNoRank, &st);
          EXPECT_FALSE(st.finite) << where << " with " << bad;
        }
      }
    }
  }
}

TEST(RowKernelTest, NonFiniteValuesAreFlaggedOnEveryTarget) {
  const double kBad[] = {std::numeric_limits<double>::quiet_NaN(),
                         std::numeric_limits<double>::infinity(),
                         -std::numeric_limits<double>::infinity()};
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    TargetScope scope(target);
    for (uint32_t c : {1u, 5u, 16u, 33u, 1000u}) {
      for (v1::DType dtype : {v1::DTYPE_FLOAT32, v1::DTYPE_FLOAT64}) {
        for (double bad : kBad) {
          for (uint32_t at : {0u, c / 2, c - 1}) {
            // The bad value in row 4 of 11: only that row is flagged.
            constexpr int kRows = 11, kBadRow = 4;
            std::vector<double> values(kRows * c, 0.5);
            values[kBadRow * c + at] = bad;
            const Row rows = Encode(dtype, values);
            const std::vector<int32_t> labels(kRows, kNoRank);
            std::vector<SoftmaxRowStats> stats(kRows);
            SoftmaxRowsSimd(dtype, rows.bytes.data(), kRows, c, 1.0, labels.data(),
                            stats.data());
            for (int r = 0; r < kRows; ++r) {
              EXPECT_EQ(stats[r].finite, r != kBadRow)
                  << hwy::TargetName(target) << " C=" << c << " value " << bad << " at "
                  << at << " row " << r;
            }
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace calib
