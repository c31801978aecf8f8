// SmoothEceAt and SmoothEce against exact float64 evaluations of metrics.md's definition
// (tests/fixtures/smooth_ece/generate_smooth_ece.py: roots of f solved, the integral
// between them in closed form), over calibrated, over- and under-confident samples, all
// correct, one, two and five samples, confidences of exactly 0 and 1, a nearly cancelling
// pair, ties on three values, and 20,000 samples.
#include "src/smooth_ece.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace calib {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

// metrics.md asks for 1e-4. smooth_ece.cc's grids are chosen for about 1e-8 at the fixed
// point and 1e-7 at any one sigma. The worst errors seen: here 4e-8
// (near_cancelling_pair) and 3e-8; over 300 random sample sets, against much finer grids,
// 2e-8 and 5e-8.
constexpr double kFixedPointTolerance = 1e-7;
constexpr double kTolerance = 2e-7;

const Struct& Cases() {
  static const Struct* cases = [] {
    const char* root = std::getenv("CALIB_SOURCE_DIR");
    const std::string path =
        std::string(root ? root : ".") + "/tests/fixtures/smooth_ece/cases.json";
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    auto* parsed = new Struct;
    const auto status = google::protobuf::util::JsonStringToMessage(text.str(), parsed);
    EXPECT_TRUE(status.ok()) << path << ": " << status.ToString();
    return parsed;
  }();
  return *cases;
}

const Value& Field(const Struct& s, const std::string& name) {
  static const Value* const kMissing = new Value;
  const auto it = s.fields().find(name);
  if (it != s.fields().end()) return it->second;
  ADD_FAILURE() << "no field " << name;
  return *kMissing;
}

// The generator's counter-based draws: the top 53 bits of splitmix64(seed + i).
uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

double Uniform(uint64_t seed, uint64_t i) {
  return static_cast<double>(SplitMix64(seed + i) >> 11) * 0x1p-53;
}

// Confidence low + (high - low) u, correct iff v < confidence^power, as
// generate_smooth_ece.py's formula_samples.
std::vector<ConfidenceSample> FormulaSamples(const Struct& formula) {
  const auto n = static_cast<uint64_t>(Field(formula, "n").number_value());
  const auto seed = static_cast<uint64_t>(Field(formula, "seed").number_value());
  const double low = Field(formula, "low").number_value();
  const double high = Field(formula, "high").number_value();
  const double power = Field(formula, "power").number_value();
  std::vector<ConfidenceSample> samples(n);
  for (uint64_t i = 0; i < n; ++i) {
    const double c = low + (high - low) * Uniform(seed, 2 * i);
    samples[i] = {c, static_cast<uint8_t>(Uniform(seed, 2 * i + 1) < std::pow(c, power))};
  }
  return samples;
}

std::vector<ConfidenceSample> Samples(const Struct& c) {
  if (c.fields().contains("formula")) {
    std::vector<ConfidenceSample> samples =
        FormulaSamples(Field(c, "formula").struct_value());
    double sum = 0;
    int correct = 0;
    for (const ConfidenceSample& s : samples) {
      sum += s.confidence;
      correct += s.correct;
    }
    // The same draws as the generator's (a slip in the formula moves these by far more).
    EXPECT_NEAR(sum, Field(c, "sum_confidence").number_value(), 1e-9);
    EXPECT_EQ(correct, Field(c, "num_correct").number_value());
    return samples;
  }
  const auto& confidence = Field(c, "confidence").list_value().values();
  const auto& correct = Field(c, "correct").list_value().values();
  EXPECT_EQ(confidence.size(), correct.size());
  std::vector<ConfidenceSample> samples;
  for (int i = 0; i < confidence.size() && i < correct.size(); ++i) {
    samples.push_back(
        {confidence[i].number_value(), static_cast<uint8_t>(correct[i].number_value())});
  }
  return samples;
}

class SmoothEceTest : public testing::TestWithParam<std::string> {
 protected:
  const Struct& Case() { return Field(Cases(), GetParam()).struct_value(); }
};

TEST_P(SmoothEceTest, AtEachSigmaMatchesExactIntegral) {
  const std::vector<ConfidenceSample> samples = Samples(Case());
  const auto& sigmas = Field(Case(), "sigmas").list_value().values();
  const auto& expected = Field(Case(), "smooth_ece_at").list_value().values();
  ASSERT_EQ(sigmas.size(), expected.size());
  ASSERT_FALSE(sigmas.empty());
  for (int i = 0; i < sigmas.size(); ++i) {
    const double sigma = sigmas[i].number_value();
    EXPECT_NEAR(SmoothEceAt(samples, sigma), expected[i].number_value(), kTolerance)
        << "sigma " << sigma;
  }
}

TEST_P(SmoothEceTest, FixedPointMatchesExactSolution) {
  const std::vector<ConfidenceSample> samples = Samples(Case());
  EXPECT_NEAR(SmoothEce(samples), Field(Case(), "smooth_ece").number_value(),
              kFixedPointTolerance);
}

INSTANTIATE_TEST_SUITE_P(Cases, SmoothEceTest,
                         testing::Values("calibrated_400", "overconfident_300",
                                         "underconfident_300", "all_correct_60",
                                         "one_wrong", "one_right", "two_opposed", "five",
                                         "zeros_and_ones_40", "near_cancelling_pair",
                                         "three_values_200", "perfect_zeros_and_ones",
                                         "calibrated_20000", "overconfident_20000"));

// One sample, or residuals of one sign: the kernel integrates to 1 over [0, 1] for any
// sigma, so smECE_sigma is the mean |c - a| and so is the fixed point.
TEST(SmoothEce, OneSignedResidualsGiveMeanAbsoluteResidual) {
  const std::vector<ConfidenceSample> samples = {{0.9, 0}, {0.65, 0}, {0.2, 0}, {0.0, 0}};
  const double mean = (0.9 + 0.65 + 0.2) / 4;
  for (double sigma : {0.003, 0.05, 1.0})
    EXPECT_NEAR(SmoothEceAt(samples, sigma), mean, 1e-9);
  EXPECT_NEAR(SmoothEce(samples), mean, 1e-9);
}

// smECE_1 >= 1 only when every sample has |c - a| = 1 with one sign: sigma = 1 is used.
TEST(SmoothEce, ConfidentAndAlwaysWrongGivesOne) {
  const std::vector<ConfidenceSample> samples = {{1.0, 0}, {1.0, 0}, {1.0, 0}};
  EXPECT_NEAR(SmoothEce(samples), 1.0, 1e-9);
}

TEST(SmoothEce, NoSamplesGiveZero) {
  EXPECT_EQ(SmoothEce({}), 0);
  EXPECT_EQ(SmoothEceAt({}, 0.1), 0);
}

}  // namespace
}  // namespace calib
