// The Poisson bootstrap: the weights are Poisson(1), the intervals are the percentiles
// of replicate figures recomputed here from the weights, they cover the true value at
// about the nominal rate on a model that is calibrated by construction, and they do not
// depend on threads or batch split.
#include "src/bootstrap.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "oneapi/tbb/task_arena.h"
#include "src/evaluator.h"

namespace calib {
namespace {

TEST(PoissonWeightTest, HasTheMomentsOfPoissonOne) {
  constexpr int kDraws = 1000000;
  double sum = 0, sum_sq = 0, zeros = 0, twos = 0;
  for (int i = 0; i < kDraws; ++i) {
    const uint32_t w = PoissonWeight(SampleKey(7, i / 100), i % 100);
    sum += w;
    sum_sq += static_cast<double>(w) * w;
    zeros += w == 0;
    twos += w == 2;
  }
  const double mean = sum / kDraws;
  // Standard errors: mean 1e-3, P(0) and P(2) about 5e-4; allow 5 of them.
  EXPECT_NEAR(mean, 1.0, 5e-3);
  EXPECT_NEAR(sum_sq / kDraws - mean * mean, 1.0, 1e-2);
  EXPECT_NEAR(zeros / kDraws, std::exp(-1.0), 2.5e-3);
  EXPECT_NEAR(twos / kDraws, std::exp(-1.0) / 2, 2.5e-3);
}

TEST(PoissonWeightTest, IsAFunctionOfSeedSampleAndReplicate) {
  EXPECT_EQ(PoissonWeight(SampleKey(1, 2), 3), PoissonWeight(SampleKey(1, 2), 3));
  int differ = 0;
  for (uint32_t b = 0; b < 200; ++b) {
    differ += PoissonWeight(SampleKey(1, 2), b) != PoissonWeight(SampleKey(2, 2), b);
  }
  EXPECT_GT(differ, 50);  // another seed draws other weights
}

struct Binary {
  std::vector<double> logits;
  std::vector<int64_t> labels;
};

// A binary model calibrated by construction: p ~ U(0, 1), y ~ Bernoulli(p). Its true
// accuracy is E max(p, 1 - p) = 3/4 and its true NLL is E H(p) = 1/2 nat.
Binary DrawCalibrated(int n, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> unit(0, 1);
  Binary d;
  for (int i = 0; i < n; ++i) {
    const double p = unit(rng);
    d.logits.push_back(std::log(p) - std::log1p(-p));
    d.labels.push_back(unit(rng) < p ? 1 : 0);
  }
  return d;
}

v1::Batch ToBatch(const Binary& d, size_t begin, size_t end) {
  v1::Batch b;
  b.mutable_logits()->set_dtype(v1::DTYPE_FLOAT64);
  b.mutable_logits()->set_data(std::string(
      reinterpret_cast<const char*>(d.logits.data() + begin), (end - begin) * 8));
  b.mutable_labels()->set_dtype(v1::DTYPE_INT64);
  b.mutable_labels()->set_data(std::string(
      reinterpret_cast<const char*>(d.labels.data() + begin), (end - begin) * 8));
  return b;
}

v1::EvaluationConfig BootstrapConfig(uint32_t replicates) {
  v1::EvaluationConfig config;
  config.set_num_classes(1);
  config.set_bootstrap_samples(replicates);
  config.set_seed(11);
  return config;
}

v1::Report Evaluate(const v1::EvaluationConfig& config, const Binary& d,
                    std::vector<size_t> cuts = {}) {
  auto ev = Evaluator::Create(config);
  EXPECT_TRUE(ev.ok()) << ev.status();
  cuts.push_back(d.logits.size());
  size_t begin = 0;
  for (size_t end : cuts) {
    EXPECT_TRUE((*ev)->Add(ToBatch(d, begin, end)).ok());
    begin = end;
  }
  auto report = (*ev)->Finish();
  EXPECT_TRUE(report.ok()) << report.status();
  return *report;
}

double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * (v.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - lo) * (v[hi] - v[lo]);
}

TEST(BootstrapTest, IntervalsArePercentilesOfTheWeightedReplicates) {
  std::mt19937_64 rng(3);
  const Binary d = DrawCalibrated(300, rng);
  constexpr uint32_t kReplicates = 99;
  const v1::Report report = Evaluate(BootstrapConfig(kReplicates), d);
  std::vector<double> accuracy, nll;
  for (uint32_t b = 0; b < kReplicates; ++b) {
    double w_sum = 0, right = 0, loss = 0;
    for (size_t i = 0; i < d.logits.size(); ++i) {
      const double w = PoissonWeight(SampleKey(11, i), b);
      const double z = d.logits[i];
      const int y = static_cast<int>(d.labels[i]);
      w_sum += w;
      right += w * ((z > 0) == (y == 1));
      loss += w * (std::max(z, 0.0) - z * y + std::log1p(std::exp(-std::abs(z))));
    }
    accuracy.push_back(right / w_sum);
    nll.push_back(loss / w_sum);
  }
  const v1::BootstrapIntervals& in = report.intervals();
  EXPECT_EQ(in.samples(), kReplicates);
  EXPECT_EQ(in.level(), 0.95);
  EXPECT_NEAR(in.accuracy().lower(), Percentile(accuracy, 0.025), 1e-12);
  EXPECT_NEAR(in.accuracy().upper(), Percentile(accuracy, 0.975), 1e-12);
  EXPECT_NEAR(in.nll().lower(), Percentile(nll, 0.025), 1e-12);
  EXPECT_NEAR(in.nll().upper(), Percentile(nll, 0.975), 1e-12);
  EXPECT_LT(in.ece().lower(), in.ece().upper());
  EXPECT_LT(in.brier().lower(), report.metrics().brier());
  EXPECT_GT(in.brier().upper(), report.metrics().brier());
}

TEST(BootstrapTest, IntervalsCoverTheTrueValueAtAboutTheNominalRate) {
  constexpr int kDraws = 300;
  std::mt19937_64 rng(5);
  int accuracy_covered = 0, nll_covered = 0;
  for (int r = 0; r < kDraws; ++r) {
    const v1::BootstrapIntervals in =
        Evaluate(BootstrapConfig(300), DrawCalibrated(400, rng)).intervals();
    accuracy_covered += in.accuracy().lower() <= 0.75 && 0.75 <= in.accuracy().upper();
    nll_covered += in.nll().lower() <= 0.5 && 0.5 <= in.nll().upper();
  }
  std::printf("coverage of the 95%% intervals in %d draws: accuracy %d, nll %d\n", kDraws,
              accuracy_covered, nll_covered);
  // A 95% interval covers in 285 of 300 draws on average, with a binomial standard
  // deviation of sqrt(300 * 0.95 * 0.05) = 3.8; percentile intervals of a mean run a
  // little short at n = 400. Accept 4 standard deviations below and anything above.
  EXPECT_GE(accuracy_covered, 285 - 16) << accuracy_covered;
  EXPECT_GE(nll_covered, 285 - 16) << nll_covered;
  EXPECT_LE(accuracy_covered, kDraws);
}

TEST(BootstrapTest, SameIntervalsWhateverTheThreadsAndSplit) {
  std::mt19937_64 rng(9);
  const Binary d = DrawCalibrated(5000, rng);
  v1::Report whole;
  tbb::task_arena one(1);
  one.execute([&] { whole = Evaluate(BootstrapConfig(200), d); });
  for (const std::vector<size_t>& cuts :
       {std::vector<size_t>{1}, {1023, 1025, 4000}, {2500}}) {
    tbb::task_arena two(2);
    v1::Report split;
    two.execute([&] { split = Evaluate(BootstrapConfig(200), d, cuts); });
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(whole, split));
  }
}

TEST(BootstrapTest, TooManyReplicatesNameTheField) {
  auto ev = Evaluator::Create(BootstrapConfig(kMaxBootstrapSamples + 1));
  EXPECT_EQ(ev.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ev.status().message().find("bootstrap_samples"), std::string::npos);
}

}  // namespace
}  // namespace calib
