// The engine end to end against a float64 reference written here from metrics.md, and
// the invariances the design promises: batch split, thread count, row order, top-1 =
// accuracy, temperature keeps accuracy; plus the engine's side of the status table.
#include "src/evaluator.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "oneapi/tbb/task_arena.h"

namespace calib {
namespace {

using ::testing::HasSubstr;

// A dataset as the engine receives it, float64 logits and int64 labels.
struct Data {
  uint32_t classes = 0;
  std::vector<double> logits;   // rows x classes
  std::vector<int64_t> labels;  // rows (SOFTMAX) or rows x classes (SIGMOID)
  uint64_t rows() const { return logits.size() / classes; }
};

Data RandomSoftmax(uint64_t rows, uint32_t classes, double scale, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0, scale);
  Data d;
  d.classes = classes;
  for (uint64_t r = 0; r < rows; ++r) {
    for (uint32_t k = 0; k < classes; ++k) d.logits.push_back(normal(rng));
    // Label drawn near the argmax so accuracy is neither 0 nor 1.
    const auto row = d.logits.end() - classes;
    const int64_t best = std::max_element(row, d.logits.end()) - row;
    d.labels.push_back(rng() % 3 == 0 ? static_cast<int64_t>(rng() % classes) : best);
  }
  return d;
}

Data RandomSigmoid(uint64_t rows, uint32_t classes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0, 2);
  std::uniform_real_distribution<double> unit(0, 1);
  Data d;
  d.classes = classes;
  for (uint64_t i = 0; i < rows * classes; ++i) {
    const double z = normal(rng);
    d.logits.push_back(z);
    d.labels.push_back(unit(rng) < 1 / (1 + std::exp(-0.7 * z)) ? 1 : 0);
  }
  return d;
}

v1::Batch MakeBatch(const Data& d, uint64_t begin, uint64_t end,
                    uint32_t labels_per_row) {
  v1::Batch b;
  b.mutable_logits()->set_dtype(v1::DTYPE_FLOAT64);
  b.mutable_logits()->set_data(
      std::string(reinterpret_cast<const char*>(d.logits.data() + begin * d.classes),
                  (end - begin) * d.classes * sizeof(double)));
  b.mutable_labels()->set_dtype(v1::DTYPE_INT64);
  b.mutable_labels()->set_data(
      std::string(reinterpret_cast<const char*>(d.labels.data() + begin * labels_per_row),
                  (end - begin) * labels_per_row * sizeof(int64_t)));
  return b;
}

// Evaluates `d` sent in batches cut at `cuts` (row indices), in an arena of `threads`.
absl::StatusOr<v1::Report> Evaluate(const v1::EvaluationConfig& config, const Data& d,
                                    std::vector<uint64_t> cuts = {}, int threads = 2) {
  tbb::task_arena arena(threads);
  absl::StatusOr<v1::Report> out;
  arena.execute([&] {
    auto ev = Evaluator::Create(config);
    if (!ev.ok()) {
      out = ev.status();
      return;
    }
    const uint32_t per_row = (*ev)->options().samples_per_row();
    cuts.push_back(d.rows());
    uint64_t begin = 0;
    for (uint64_t end : cuts) {
      if (absl::Status s = (*ev)->Add(MakeBatch(d, begin, end, per_row)); !s.ok()) {
        out = s;
        return;
      }
      begin = end;
    }
    out = (*ev)->Finish();
  });
  return out;
}

// --- the float64 reference, written from metrics.md alone ----------------------------

struct Pair {
  double c;
  int a;
};

struct Reference {
  double accuracy = 0, nll = 0, brier = 0, confidence = 0, entropy = 0;
  std::vector<double> top_k;
  std::vector<Pair> pairs;  // (confidence, correct) per sample
  double classwise = 0;
};

int BinOf(double c, int m) {
  // Right-closed: the m with m/M < c <= (m+1)/M, scanning the edges.
  for (int b = 0; b < m; ++b) {
    if (c <= static_cast<double>(b + 1) / m) return b;
  }
  return m - 1;
}

double EceOf(const std::vector<Pair>& pairs, int m) {
  std::vector<double> n(m), acc(m), conf(m);
  for (const Pair& p : pairs) {
    const int b = BinOf(p.c, m);
    n[b] += 1;
    acc[b] += p.a;
    conf[b] += p.c;
  }
  double ece = 0;
  for (int b = 0; b < m; ++b) {
    if (n[b] > 0) ece += n[b] / pairs.size() * std::abs(acc[b] / n[b] - conf[b] / n[b]);
  }
  return ece;
}

Reference SoftmaxReference(const Data& d, std::vector<int> ks, double t, int bins) {
  Reference ref;
  ref.top_k.resize(ks.size());
  const uint32_t c = d.classes;
  std::vector<std::vector<Pair>> per_class(c);
  for (uint64_t r = 0; r < d.rows(); ++r) {
    std::vector<double> z(d.logits.begin() + r * c, d.logits.begin() + (r + 1) * c);
    for (double& v : z) v /= t;
    const int y = static_cast<int>(d.labels[r]);
    const double m = *std::max_element(z.begin(), z.end());
    double s = 0;
    for (double v : z) s += std::exp(v - m);
    std::vector<double> p(c);
    for (uint32_t k = 0; k < c; ++k) p[k] = std::exp(z[k] - m) / s;
    const int pred = std::max_element(z.begin(), z.end()) - z.begin();
    ref.accuracy += pred == y;
    ref.nll += m + std::log(s) - z[y];
    for (uint32_t k = 0; k < c; ++k) {
      ref.brier +=
          (p[k] - (static_cast<int>(k) == y)) * (p[k] - (static_cast<int>(k) == y));
      ref.entropy -= p[k] * std::log(p[k]);
      per_class[k].push_back({p[k], static_cast<int>(k) == y});
    }
    ref.confidence += p[pred];
    ref.pairs.push_back({p[pred], pred == y});
    for (size_t i = 0; i < ks.size(); ++i) {
      int before = 0;
      for (uint32_t j = 0; j < c; ++j) {
        before += z[j] > z[y] || (z[j] == z[y] && static_cast<int>(j) < y);
      }
      ref.top_k[i] += before < ks[i];
    }
  }
  const double n = static_cast<double>(d.rows());
  ref.accuracy /= n;
  ref.nll /= n;
  ref.brier /= n;
  ref.confidence /= n;
  ref.entropy /= n;
  for (double& v : ref.top_k) v /= n;
  for (const auto& pc : per_class) ref.classwise += EceOf(pc, bins) / c;
  return ref;
}

v1::EvaluationConfig SoftmaxConfig(uint32_t classes) {
  v1::EvaluationConfig config;
  config.set_num_classes(classes);
  return config;
}

TEST(EvaluatorTest, SoftmaxMatchesFloat64Reference) {
  const Data d = RandomSoftmax(3000, 7, 2.0, 1);
  v1::EvaluationConfig config = SoftmaxConfig(7);
  config.add_top_k(1);
  config.add_top_k(3);
  config.set_classwise(true);
  auto report = Evaluate(config, d);
  ASSERT_TRUE(report.ok()) << report.status();
  const v1::Metrics& m = report->metrics();
  const Reference ref = SoftmaxReference(d, {1, 3}, 1.0, 15);
  EXPECT_EQ(m.num_samples(), 3000u);
  EXPECT_NEAR(m.accuracy(), ref.accuracy, 1e-12);
  EXPECT_NEAR(m.nll(), ref.nll, 1e-12 * ref.nll);
  EXPECT_NEAR(m.brier(), ref.brier, 1e-12);
  EXPECT_NEAR(m.mean_confidence(), ref.confidence, 1e-12);
  EXPECT_NEAR(m.mean_entropy(), ref.entropy, 1e-12);
  ASSERT_EQ(m.top_k_size(), 2);
  EXPECT_NEAR(m.top_k(0).accuracy(), ref.top_k[0], 1e-15);
  EXPECT_NEAR(m.top_k(1).accuracy(), ref.top_k[1], 1e-15);
  EXPECT_NEAR(m.ece(), EceOf(ref.pairs, 15), 1e-12);
  EXPECT_NEAR(m.classwise_ece(), ref.classwise, 1e-12);
  ASSERT_EQ(m.reliability_bins_size(), 15);
  uint64_t total = 0;
  for (const auto& bin : m.reliability_bins()) total += bin.count();
  EXPECT_EQ(total, 3000u);
  EXPECT_EQ(m.equal_mass_bins_size(), 15);
  EXPECT_TRUE(report->warnings().empty());
}

TEST(EvaluatorTest, SigmoidBinaryAndMultiLabelMatchReference) {
  for (uint32_t classes : {1u, 4u}) {
    const Data d = RandomSigmoid(2000, classes, 2);
    v1::EvaluationConfig config;
    config.set_num_classes(classes);
    config.set_activation(v1::ACTIVATION_SIGMOID);
    auto report = Evaluate(config, d);
    ASSERT_TRUE(report.ok()) << report.status();
    double acc = 0, nll = 0, brier = 0, conf = 0;
    std::vector<Pair> pairs;
    for (size_t i = 0; i < d.logits.size(); ++i) {
      const double z = d.logits[i];
      const int y = static_cast<int>(d.labels[i]);
      const double p = 1 / (1 + std::exp(-z));
      acc += (z > 0) == (y == 1);
      nll += -(y * std::log(p) + (1 - y) * std::log(1 - p));
      brier += (p - y) * (p - y);
      conf += p;
      pairs.push_back({p, y});
    }
    const double n = static_cast<double>(d.logits.size());
    const v1::Metrics& m = report->metrics();
    EXPECT_EQ(m.num_samples(), d.logits.size());
    EXPECT_NEAR(m.accuracy(), acc / n, 1e-12);
    EXPECT_NEAR(m.nll(), nll / n, 1e-10 * nll / n);
    EXPECT_NEAR(m.brier(), brier / n, 1e-12);
    EXPECT_NEAR(m.mean_confidence(), conf / n, 1e-12);
    EXPECT_NEAR(m.ece(), EceOf(pairs, 15), 1e-12);
  }
}

TEST(EvaluatorTest, TopLabelConfidencesOfXAndMinusXTie) {
  // max(p, 1 - p) is the same for x and -x; computed as sigmoid(|x|) it is the same
  // double, so each value's four rows (x, -x, x, -x, all with target 1: right, wrong,
  // right, wrong) stay in arrival order, and each equal-mass bin of two holds one right
  // and one wrong. Were -x a rounding below x, the bins would split 0 / 1.
  Data d;
  d.classes = 1;
  for (double v : {0.3, 1.0, 1.7, 2.5, 3.1}) {
    for (double x : {v, -v, v, -v}) {
      d.logits.push_back(x);
      d.labels.push_back(1);
    }
  }
  v1::EvaluationConfig config;
  config.set_num_classes(1);
  config.set_binary_reliability(v1::BINARY_RELIABILITY_TOP_LABEL);
  config.set_num_bins(10);
  auto report = Evaluate(config, d);
  ASSERT_TRUE(report.ok()) << report.status();
  const auto& bins = report->metrics().equal_mass_bins();
  ASSERT_EQ(bins.size(), 10);
  for (const v1::ReliabilityBin& bin : bins) {
    EXPECT_EQ(bin.lower(), bin.upper());
    EXPECT_EQ(bin.accuracy(), 0.5);
  }
}

TEST(EvaluatorTest, SameBitsWhateverTheBatchSplitAndThreadCount) {
  const Data d = RandomSoftmax(5000, 5, 3.0, 3);
  v1::EvaluationConfig config = SoftmaxConfig(5);
  config.add_top_k(2);
  config.set_classwise(true);
  config.set_fit_temperature(true);
  auto whole = Evaluate(config, d, {}, 1);
  ASSERT_TRUE(whole.ok()) << whole.status();
  const std::vector<std::vector<uint64_t>> splits = {
      {1}, {1023, 1024, 1025}, {7, 2048, 2049, 4999}, {100, 100, 3000}};
  for (const auto& cuts : splits) {
    for (int threads : {1, 2}) {
      auto split = Evaluate(config, d, cuts, threads);
      ASSERT_TRUE(split.ok()) << split.status();
      EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*whole, *split))
          << "cuts " << cuts.size() << " threads " << threads;
    }
  }
}

TEST(EvaluatorTest, OrderFreeFiguresIgnoreRowOrder) {
  Data d = RandomSoftmax(2000, 4, 2.0, 4);
  const v1::EvaluationConfig config = SoftmaxConfig(4);
  auto before = Evaluate(config, d);
  // Reverse the rows.
  Data r = d;
  for (uint64_t i = 0; i < d.rows(); ++i) {
    const uint64_t j = d.rows() - 1 - i;
    std::copy_n(d.logits.begin() + j * 4, 4, r.logits.begin() + i * 4);
    r.labels[i] = d.labels[j];
  }
  auto after = Evaluate(config, r);
  ASSERT_TRUE(before.ok() && after.ok());
  const v1::Metrics &a = before->metrics(), &b = after->metrics();
  EXPECT_DOUBLE_EQ(a.accuracy(), b.accuracy());
  EXPECT_NEAR(a.nll(), b.nll(), 1e-13);
  EXPECT_NEAR(a.ece(), b.ece(), 1e-13);
  EXPECT_NEAR(a.ece_equal_mass(), b.ece_equal_mass(), 1e-13);
  for (int i = 0; i < 15; ++i) {
    EXPECT_EQ(a.reliability_bins(i).count(), b.reliability_bins(i).count());
  }
}

TEST(EvaluatorTest, TopOneIsAccuracyEvenWithTies) {
  Data d = RandomSoftmax(1000, 6, 1.0, 5);
  for (double& v : d.logits) v = std::round(v);  // integer logits: many ties
  v1::EvaluationConfig config = SoftmaxConfig(6);
  config.add_top_k(1);
  config.add_top_k(6);
  auto report = Evaluate(config, d);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->metrics().top_k(0).accuracy(), report->metrics().accuracy());
  EXPECT_EQ(report->metrics().top_k(1).accuracy(), 1.0);
  EXPECT_NEAR(report->metrics().accuracy(), SoftmaxReference(d, {}, 1, 15).accuracy,
              1e-15);
}

TEST(EvaluatorTest, TemperatureKeepsAccuracyAndRecomputesEverything) {
  const Data d = RandomSoftmax(3000, 5, 4.0, 6);  // over-confident: T > 1
  v1::EvaluationConfig config = SoftmaxConfig(5);
  config.set_fit_temperature(true);
  auto report = Evaluate(config, d);
  ASSERT_TRUE(report.ok()) << report.status();
  const v1::TemperatureScaling& ts = report->temperature_scaling();
  EXPECT_TRUE(ts.converged());
  EXPECT_GT(ts.temperature(), 1);
  EXPECT_EQ(ts.fit_samples(), 3000u);
  EXPECT_EQ(ts.calibrated().accuracy(), report->metrics().accuracy());
  EXPECT_LT(ts.calibrated().nll(), report->metrics().nll());
  const Reference ref = SoftmaxReference(d, {}, ts.temperature(), 15);
  EXPECT_NEAR(ts.calibrated().nll(), ref.nll, 1e-12 * ref.nll);
  EXPECT_NEAR(ts.calibrated().brier(), ref.brier, 1e-12);
  EXPECT_NEAR(ts.calibrated().ece(), EceOf(ref.pairs, 15), 1e-12);
  // The optimum: the NLL a little either side is higher.
  for (double f : {0.999, 1.001}) {
    EXPECT_GT(SoftmaxReference(d, {}, ts.temperature() * f, 15).nll, ref.nll);
  }
}

TEST(EvaluatorTest, TemperatureFromTheRawPassesFirstStepMatchesTheFitsOwn) {
  // With every row kept, the vectorised raw pass supplies the fit's first step. The
  // scalar path (classwise bins turn the vectorised one off) computes that step in a
  // fit pass of its own: both must reach the same T by the same steps.
  const Data d = RandomSoftmax(2500, 7, 3.0, 12);
  v1::EvaluationConfig config = SoftmaxConfig(7);
  config.set_fit_temperature(true);
  auto vectorised = Evaluate(config, d);
  config.set_classwise(true);
  auto scalar = Evaluate(config, d);
  ASSERT_TRUE(vectorised.ok() && scalar.ok());
  const v1::TemperatureScaling &a = vectorised->temperature_scaling(),
                               &b = scalar->temperature_scaling();
  EXPECT_EQ(a.iterations(), b.iterations());
  EXPECT_NEAR(a.temperature(), b.temperature(), 1e-12 * b.temperature());
  EXPECT_NEAR(a.calibrated().nll(), b.calibrated().nll(), 1e-13);
}

TEST(EvaluatorTest, IgnoreIndexSkipsRowsAndCountsThem) {
  Data d = RandomSoftmax(100, 3, 1.0, 7);
  for (uint64_t r = 0; r < 100; r += 4) d.labels[r] = -100;
  v1::EvaluationConfig config = SoftmaxConfig(3);
  config.set_ignore_index(-100);
  auto report = Evaluate(config, d);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->num_ignored(), 25u);
  EXPECT_EQ(report->metrics().num_samples(), 75u);
  Data kept;
  kept.classes = 3;
  for (uint64_t r = 0; r < 100; ++r) {
    if (d.labels[r] == -100) continue;
    kept.logits.insert(kept.logits.end(), d.logits.begin() + 3 * r,
                       d.logits.begin() + 3 * r + 3);
    kept.labels.push_back(d.labels[r]);
  }
  EXPECT_NEAR(report->metrics().nll(), SoftmaxReference(kept, {}, 1, 15).nll, 1e-12);
}

TEST(EvaluatorTest, WarnsWhenLogitsLookLikeProbabilities) {
  Data d = RandomSoftmax(50, 3, 1.0, 8);
  for (uint64_t r = 0; r < 50; ++r) {
    double s = 0;
    for (int k = 0; k < 3; ++k) s += std::exp(d.logits[3 * r + k]);
    for (int k = 0; k < 3; ++k) d.logits[3 * r + k] = std::exp(d.logits[3 * r + k]) / s;
  }
  auto report = Evaluate(SoftmaxConfig(3), d);
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->warnings_size(), 1);
  EXPECT_THAT(report->warnings(0), HasSubstr("probabilities"));
}

TEST(EvaluatorTest, BadInputsNameTheirRowColumnAndValue) {
  Data d = RandomSoftmax(10, 3, 1.0, 9);
  d.logits[3 * 6 + 2] = std::nan("");
  auto nan = Evaluate(SoftmaxConfig(3), d, {4});
  EXPECT_EQ(nan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(nan.status().message(), HasSubstr("row 6, column 2"));

  Data e = RandomSoftmax(10, 3, 1.0, 9);
  e.labels[8] = 3;
  e.logits[3 * 9] = std::numeric_limits<double>::infinity();  // later than the label
  auto label = Evaluate(SoftmaxConfig(3), e);
  EXPECT_THAT(label.status().message(), HasSubstr("row 8 is 3"));

  e.logits[3 * 2 + 1] = -std::numeric_limits<double>::infinity();  // earlier
  EXPECT_THAT(Evaluate(SoftmaxConfig(3), e).status().message(),
              HasSubstr("row 2, column 1"));

  Data all = RandomSoftmax(5, 3, 1.0, 9);
  for (auto& l : all.labels) l = -1;
  v1::EvaluationConfig config = SoftmaxConfig(3);
  config.set_ignore_index(-1);
  EXPECT_THAT(Evaluate(config, all).status().message(), HasSubstr("no samples"));
  EXPECT_THAT(Evaluate(SoftmaxConfig(3), Data{3, {}, {}}).status().message(),
              HasSubstr("no samples"));
}

TEST(EvaluatorTest, BatchShapeAndDtypeErrors) {
  auto ev = Evaluator::Create(SoftmaxConfig(3));
  ASSERT_TRUE(ev.ok());
  v1::Batch b;
  b.mutable_logits()->set_data(std::string(13, '\0'));
  EXPECT_THAT((*ev)->Add(b).message(), HasSubstr("13 bytes"));

  auto ev2 = Evaluator::Create(SoftmaxConfig(3));
  b.mutable_logits()->set_data(std::string(24, '\0'));  // 2 rows of float32
  b.mutable_labels()->set_dtype(v1::DTYPE_INT32);
  b.mutable_labels()->set_data(std::string(12, '\0'));  // 3 labels
  EXPECT_THAT((*ev2)->Add(b).message(), HasSubstr("2 rows"));

  auto ev3 = Evaluator::Create(SoftmaxConfig(3));
  b.mutable_labels()->set_dtype(v1::DTYPE_FLOAT32);
  EXPECT_THAT((*ev3)->Add(b).message(), HasSubstr("float32"));

  auto ev4 = Evaluator::Create(SoftmaxConfig(3));
  b.mutable_logits()->set_dtype(v1::DTYPE_INT32);
  EXPECT_THAT((*ev4)->Add(b).message(), HasSubstr("batch.logits.dtype is int32"));
  EXPECT_EQ((*ev4)->Finish().status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(EvaluatorTest, ConfigErrorsNameTheField) {
  v1::EvaluationConfig config;
  EXPECT_THAT(Evaluator::Create(config).status().message(), HasSubstr("num_classes"));
  config.set_num_classes(4);
  config.set_num_bins(10001);
  EXPECT_THAT(Evaluator::Create(config).status().message(), HasSubstr("num_bins"));
  config.set_num_bins(0);
  config.add_top_k(5);
  EXPECT_THAT(Evaluator::Create(config).status().message(), HasSubstr("top_k holds 5"));
  config.clear_top_k();
  config.set_activation(static_cast<v1::Activation>(9));
  EXPECT_THAT(Evaluator::Create(config).status().message(),
              HasSubstr("activation has the unknown value 9"));
}

}  // namespace
}  // namespace calib
