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

void ExpectNear(double actual, double expected, double rel, const std::string& what) {
  EXPECT_LE(std::abs(actual - expected), rel * std::abs(expected) + 1e-300)
      << what << ": got " << actual << ", expected " << expected;
}

void CheckSoftmax(const Row& row, double scale, int32_t label, const std::string& where) {
  const auto& z = row.z;
  const uint32_t c = static_cast<uint32_t>(z.size());
  SoftmaxRowStats st;
  SoftmaxRowSimd(row.dtype, row.bytes.data(), c, scale, label, &st);
  ASSERT_TRUE(st.finite) << where;
  const double m = *std::max_element(z.begin(), z.end());
  const uint32_t argmax =
      static_cast<uint32_t>(std::max_element(z.begin(), z.end()) - z.begin());
  double rest = 0, rest_sq = 0, sum_ed = 0;
  uint32_t ties = 0, above = 0, level = 0;
  for (uint32_t k = 0; k < c; ++k) {
    const double d = scale * (z[k] - m);
    if (z[k] == m) {
      ++ties;
    } else {
      const double e = std::exp(d);
      rest += e;
      rest_sq += e * e;
      sum_ed += e * d;
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
  ExpectNear(st.rest, rest, 1e-12, where + " rest");
  ExpectNear(st.rest_sq, rest_sq, 1e-12, where + " rest_sq");
  ExpectNear(st.sum_ed, sum_ed, 1e-12, where + " sum_ed");
  if (label >= 0) {
    EXPECT_EQ(st.above, above) << where;
    EXPECT_EQ(st.level, level) << where;
  }
}

void CheckTemperature(const Row& row, double beta, const std::string& where) {
  const auto& z = row.z;
  const uint32_t c = static_cast<uint32_t>(z.size());
  TemperatureRowSums t;
  TemperatureRowSimd(row.dtype, row.bytes.data(), c, beta, &t);
  const double m = *std::max_element(z.begin(), z.end());
  double rest = 0, ez = 0, ez2 = 0;
  uint32_t ties = 0;
  for (double v : z) {
    const double g = v - m;
    const double e = std::exp(beta * g);
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
  ExpectNear(t.rest, rest, 1e-12, where + " rest");
  ExpectNear(t.sum_ez, ez, 1e-12, where + " sum_ez");
  ExpectNear(t.sum_ez2, ez2, 1e-12, where + " sum_ez2");
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
    sizes.push_back(1000);
    sizes.push_back(50257);
    for (uint32_t c : sizes) {
      for (v1::DType dtype : kDTypes) {
        for (int kind = 0; kind < 4; ++kind) {
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
          const Row row = Encode(dtype, values);
          const int32_t label = static_cast<int32_t>(rng() % c);
          const std::string where =
              std::string(hwy::TargetName(target)) + " C=" + std::to_string(c) +
              " dtype=" + std::to_string(dtype) + " kind=" + std::to_string(kind);
          CheckSoftmax(row, 1.0, label, where);
          CheckSoftmax(row, 0.37, -1, where + " scale 0.37");
          CheckSoftmax(row, 1e-9, label, where + " scale 1e-9");
          CheckTemperature(row, 1.0, where);
          CheckTemperature(row, 3.1, where + " beta 3.1");
          CheckTemperature(row, 1e-6, where + " beta 1e-6");
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
            std::vector<double> values(c, 0.5);
            values[at] = bad;
            const Row row = Encode(dtype, values);
            SoftmaxRowStats st;
            SoftmaxRowSimd(dtype, row.bytes.data(), c, 1.0, -1, &st);
            EXPECT_FALSE(st.finite) << hwy::TargetName(target) << " C=" << c << " value "
                                    << bad << " at " << at;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace calib
