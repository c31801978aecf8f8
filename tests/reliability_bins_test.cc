#include "src/reliability_bins.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace calib {
namespace {

// --- EqualWidthBin ---

// The definition itself: the bin index is the number of interior edges e_j = j / M
// (j = 1 .. M-1, in double) lying below c (RIGHT_CLOSED) or at or below c (LEFT_CLOSED).
// This needs no special case for c <= 0 or c >= 1.
uint32_t BruteForceBin(const std::vector<double>& interior_edges, double c,
                       bool left_closed) {
  uint32_t m = 0;
  for (double e : interior_edges) {
    if (left_closed ? e <= c : e < c) ++m;
  }
  return m;
}

std::vector<double> InteriorEdges(uint32_t num_bins) {
  std::vector<double> edges;
  for (uint32_t j = 1; j < num_bins; ++j) {
    edges.push_back(static_cast<double>(j) / static_cast<double>(num_bins));
  }
  return edges;
}

// Every edge of M bins, its two neighbours on each side, values around the distance
// (1e-9 / M) within which EqualWidthBin checks the edges, and random values.
std::vector<double> ProbeValues(uint32_t num_bins, std::mt19937_64& rng) {
  std::vector<double> probes = {
      0.0,  -0.0, 1.0,    -1e-300,
      -1.0, 2.0,  1e-300, std::numeric_limits<double>::denorm_min()};
  for (uint32_t j = 0; j <= num_bins; ++j) {
    const double e = static_cast<double>(j) / static_cast<double>(num_bins);
    double down = e;
    double up = e;
    probes.push_back(e);
    for (int step = 0; step < 2; ++step) {
      down = std::nextafter(down, -1.0);
      up = std::nextafter(up, 2.0);
      probes.push_back(down);
      probes.push_back(up);
    }
    for (double k : {0.5, 1.0, 2.0}) {
      probes.push_back(e - k * 1e-9 / num_bins);
      probes.push_back(e + k * 1e-9 / num_bins);
    }
  }
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (int i = 0; i < 200; ++i) probes.push_back(uniform(rng));
  return probes;
}

void ExpectMatchesBruteForce(uint32_t num_bins, std::mt19937_64& rng) {
  const std::vector<double> edges = InteriorEdges(num_bins);
  for (double c : ProbeValues(num_bins, rng)) {
    for (bool left_closed : {false, true}) {
      ASSERT_EQ(EqualWidthBin(c, num_bins, left_closed),
                BruteForceBin(edges, c, left_closed))
          << "c=" << c << " M=" << num_bins << " left_closed=" << left_closed;
    }
  }
}

TEST(EqualWidthBinTest, MatchesBruteForceScanOfEdges) {
  std::mt19937_64 rng(20240601);
  for (uint32_t num_bins = 1; num_bins <= 50; ++num_bins) {
    ExpectMatchesBruteForce(num_bins, rng);
  }
  for (uint32_t num_bins : {64u, 100u, 1000u, 10000u}) {
    ExpectMatchesBruteForce(num_bins, rng);
  }
}

TEST(EqualWidthBinTest, ValuesOnAndBesideEdges) {
  struct Case {
    double c;
    uint32_t num_bins;
    uint32_t right_closed;
    uint32_t left_closed;
  };
  // Where c * M rounds to the wrong side of the edge, so the first guess is off by one.
  const double below_09 = std::nextafter(0.9, 0.0);  // below_09 * 10 rounds up to 9.0
  const double e_15_22 = 15.0 / 22;                  // e_15_22 * 22 rounds below 15
  const Case cases[] = {
      {0.4, 5, 1, 2},   // 2/5 == 0.4 exactly in double
      {0.4, 10, 3, 4},  // 4/10 == 0.4
      {0.9, 10, 8, 9},
      {below_09, 10, 8, 8},
      {std::nextafter(0.9, 1.0), 10, 9, 9},
      {e_15_22, 22, 14, 15},
      {std::nextafter(e_15_22, 1.0), 22, 15, 15},
      {0.5, 2, 0, 1},
      {0.0, 15, 0, 0},
      {1.0, 15, 14, 14},
      {1.0 / 15, 15, 0, 1},
      {14.0 / 15, 15, 13, 14},
  };
  for (const Case& k : cases) {
    EXPECT_EQ(EqualWidthBin(k.c, k.num_bins, false), k.right_closed)
        << k.c << " M=" << k.num_bins;
    EXPECT_EQ(EqualWidthBin(k.c, k.num_bins, true), k.left_closed)
        << k.c << " M=" << k.num_bins;
  }
}

// --- ClopperPearson ---

TEST(ClopperPearsonTest, MatchesHighPrecisionBetaQuantiles) {
  // Computed with mpmath 1.2.1 at 60 digits, independently of Boost: the regularised
  // incomplete beta I_x(a, b) of integer a, b summed as a binomial tail, inverted by 190
  // bisection steps, alpha = 1 - level taken from the double level; lower =
  // I^-1(alpha/2; k, n-k+1) (0 if k = 0), upper = I^-1(1-alpha/2; k+1, n-k) (1 if k = n).
  // scipy.stats.beta.ppf (SciPy 1.10.1) agrees with every value within 2e-15 relative.
  struct Case {
    uint64_t k;
    uint64_t n;
    double level;
    double lower;
    double upper;
  };
  const Case cases[] = {
      {0, 10, 0.95, 0.0, 0.30849710781876076},
      {3, 10, 0.95, 0.06673951117773449, 0.65245285005999724},
      {10, 10, 0.95, 0.69150289218123924, 1.0},
      {1, 1, 0.95, 0.025000000000000022, 1.0},
      {500, 1000, 0.95, 0.46854917297179195, 0.53145082702820805},
      {1, 100000, 0.95, 2.5317804779333163e-7, 5.5715160347742751e-5},
      {99999, 100000, 0.95, 0.99994428483965226, 0.99999974682195221},
      {7, 13, 0.95, 0.25134548227030356, 0.80776755819871199},
      {0, 10, 0.9, 0.0, 0.2588655508930523},
      {3, 10, 0.9, 0.087264433914150299, 0.60662421610541344},
      {10, 10, 0.9, 0.7411344491069477, 1.0},
      {1, 1, 0.9, 0.049999999999999989, 1.0},
      {500, 1000, 0.9, 0.4735177312356912, 0.5264822687643088},
      {1, 100000, 0.9, 5.1293281232542525e-7, 4.7437757173860545e-5},
      {99999, 100000, 0.9, 0.99995256224282614, 0.99999948706718767},
      {7, 13, 0.9, 0.28704900279438892, 0.77604460578868077},
  };
  for (const Case& c : cases) {
    const auto [lower, upper] = ClopperPearson(c.k, c.n, c.level);
    EXPECT_NEAR(lower, c.lower, 1e-10 * c.lower) << c.k << "/" << c.n << " @" << c.level;
    EXPECT_NEAR(upper, c.upper, 1e-10 * c.upper) << c.k << "/" << c.n << " @" << c.level;
  }
}

TEST(ClopperPearsonTest, AllOrNothingMatchesClosedForm) {
  // With k = 0, I_x(1, n) = 1 - (1 - x)^n, so upper = 1 - (alpha/2)^(1/n); k = n mirrors
  // it.
  for (double level : {0.5, 0.9, 0.95, 0.99}) {
    const double half_alpha = (1 - level) / 2;
    for (uint64_t n : {1ull, 2ull, 3ull, 10ull, 77ull, 1000ull, 123456ull, 10000000ull}) {
      const double root = std::exp(std::log(half_alpha) / static_cast<double>(n));
      const double edge = -std::expm1(std::log(half_alpha) / static_cast<double>(n));
      const auto [lo0, hi0] = ClopperPearson(0, n, level);
      EXPECT_EQ(lo0, 0.0);
      EXPECT_NEAR(hi0, edge, 1e-12 * edge) << n << " @" << level;
      const auto [lon, hin] = ClopperPearson(n, n, level);
      EXPECT_NEAR(lon, root, 1e-12 * root) << n << " @" << level;
      EXPECT_EQ(hin, 1.0);
    }
  }
}

TEST(ClopperPearsonTest, EmptyIsZeroZero) {
  EXPECT_EQ(ClopperPearson(0, 0, 0.95), std::make_pair(0.0, 0.0));
}

TEST(ClopperPearsonTest, ExtremeInputsStayInUnitIntervalWithoutThrowing) {
  const uint64_t huge = uint64_t{1} << 40;
  struct Case {
    uint64_t k;
    uint64_t n;
    double level;
  };
  const Case cases[] = {{1, huge, 0.95},        {huge - 1, huge, 0.95},
                        {huge / 2, huge, 0.95}, {5, 10, 0.0},
                        {5, 10, 1.0},           {5, 10, 1 - 1e-15},
                        {1, 2, 1e-15},          {3, 1000000000, 0.999999}};
  for (const Case& c : cases) {
    const auto [lower, upper] = ClopperPearson(c.k, c.n, c.level);
    EXPECT_GE(lower, 0.0) << c.k << "/" << c.n << " @" << c.level;
    EXPECT_LE(lower, upper) << c.k << "/" << c.n << " @" << c.level;
    EXPECT_LE(upper, 1.0) << c.k << "/" << c.n << " @" << c.level;
  }
  // Level 1 (alpha = 0) is the whole interval.
  EXPECT_EQ(ClopperPearson(5, 10, 1.0), std::make_pair(0.0, 1.0));
}

// --- ComputeErrors ---

struct Sample {
  double confidence;
  int correct;
};

// metrics.md's formulas, evaluated from per-bin sample lists in float64.
CalibrationErrors ReferenceErrors(const std::vector<std::vector<Sample>>& groups) {
  size_t total = 0;
  for (const auto& g : groups) total += g.size();
  CalibrationErrors e;
  if (total == 0) return e;
  double ece = 0, mce = 0, squared = 0, debiased = 0;
  for (const auto& g : groups) {
    if (g.empty()) continue;
    double conf = 0, acc = 0;
    for (const Sample& s : g) {
      conf += s.confidence;
      acc += s.correct;
    }
    const double n = static_cast<double>(g.size());
    conf /= n;
    acc /= n;
    const double w = n / static_cast<double>(total);
    ece += w * std::fabs(acc - conf);
    mce = std::max(mce, std::fabs(acc - conf));
    squared += w * (acc - conf) * (acc - conf);
    if (g.size() >= 2) {
      debiased += w * ((acc - conf) * (acc - conf) - acc * (1 - acc) / (n - 1));
    }
  }
  e.ece = ece;
  e.mce = mce;
  e.rms_ce = std::sqrt(squared);
  e.debiased_rms_ce = debiased > 0 ? std::sqrt(debiased) : 0.0;
  return e;
}

BinSums SumsOf(const std::vector<Sample>& group) {
  BinSums sums;
  for (const Sample& s : group) {
    sums.count += 1;
    sums.positives += static_cast<uint64_t>(s.correct);
    sums.sum_confidence += s.confidence;
  }
  return sums;
}

void ExpectErrorsNear(const CalibrationErrors& got, const CalibrationErrors& want,
                      double rel) {
  EXPECT_NEAR(got.ece, want.ece, rel * want.ece);
  EXPECT_NEAR(got.mce, want.mce, rel * want.mce);
  EXPECT_NEAR(got.rms_ce, want.rms_ce, rel * want.rms_ce);
  EXPECT_NEAR(got.debiased_rms_ce, want.debiased_rms_ce, rel * want.debiased_rms_ce);
}

TEST(ComputeErrorsTest, HandCheckedTinyCase) {
  // Bin A: 10 samples, 9 right, mean confidence 0.5 -> gap 0.4, variance 0.9*0.1/9 =
  // 0.01. Bin B: empty. Bin C: one sample, wrong, confidence 0.9 -> gap 0.9, no debias
  // term. Bin D: 5 samples, 1 right, mean confidence 0.3 -> gap 0.1, variance 0.2*0.8/4 =
  // 0.04. N = 16: ece = (10*0.4 + 0.9 + 5*0.1)/16 = 0.3375; mce = 0.9; rms^2 = (10*0.16 +
  // 0.81 + 5*0.01)/16 = 0.15375; debiased^2 = (10*(0.16-0.01) + 5*(0.01-0.04))/16 =
  // 0.084375.
  const std::vector<BinSums> bins = {{10, 9, 5.0}, {0, 0, 0.0}, {1, 0, 0.9}, {5, 1, 1.5}};
  const CalibrationErrors e = ComputeErrors(bins);
  EXPECT_NEAR(e.ece, 0.3375, 1e-15);
  EXPECT_NEAR(e.mce, 0.9, 1e-15);
  EXPECT_NEAR(e.rms_ce, std::sqrt(0.15375), 1e-15);
  EXPECT_NEAR(e.debiased_rms_ce, std::sqrt(0.084375), 1e-15);
}

TEST(ComputeErrorsTest, NegativeDebiasedSumClampsToZero) {
  // gap 0.05 with 4 samples: 0.0025 - 0.75*0.25/3 < 0.
  const std::vector<BinSums> bins = {{4, 3, 2.8}};
  const CalibrationErrors e = ComputeErrors(bins);
  EXPECT_NEAR(e.rms_ce, 0.05, 1e-15);
  EXPECT_EQ(e.debiased_rms_ce, 0.0);
}

TEST(ComputeErrorsTest, NoSamplesGiveZeros) {
  const std::vector<BinSums> empty_bins(15);
  for (const CalibrationErrors& e :
       {ComputeErrors(empty_bins), ComputeErrors(absl::Span<const BinSums>())}) {
    EXPECT_EQ(e.ece, 0.0);
    EXPECT_EQ(e.mce, 0.0);
    EXPECT_EQ(e.rms_ce, 0.0);
    EXPECT_EQ(e.debiased_rms_ce, 0.0);
  }
}

// Random samples whose correctness follows a miscalibrated curve, so the errors are
// well away from zero.
std::vector<Sample> RandomSamples(size_t n, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<Sample> samples(n);
  for (Sample& s : samples) {
    s.confidence = uniform(rng);
    s.correct = uniform(rng) < s.confidence * s.confidence ? 1 : 0;
  }
  return samples;
}

TEST(ComputeErrorsTest, MatchesFloat64ReferenceOnRandomData) {
  std::mt19937_64 rng(7);
  for (uint32_t num_bins : {1u, 2u, 10u, 15u, 100u}) {
    for (size_t n : {size_t{3}, size_t{50}, size_t{1000}, size_t{20000}}) {
      const std::vector<Sample> samples = RandomSamples(n, rng);
      std::vector<std::vector<Sample>> groups(num_bins);
      for (const Sample& s : samples) {
        groups[EqualWidthBin(s.confidence, num_bins, false)].push_back(s);
      }
      std::vector<BinSums> bins;
      for (const auto& g : groups) bins.push_back(SumsOf(g));
      SCOPED_TRACE(testing::Message() << "M=" << num_bins << " N=" << n);
      ExpectErrorsNear(ComputeErrors(bins), ReferenceErrors(groups), 1e-12);
    }
  }
}

// --- AppendEqualWidthBins ---

TEST(AppendEqualWidthBinsTest, OneBinPerElementWithEdgesAndIntervals) {
  const std::vector<BinSums> bins = {{4, 1, 0.4}, {0, 0, 0.0}, {3, 3, 2.7}};
  google::protobuf::RepeatedPtrField<v1::ReliabilityBin> out;
  AppendEqualWidthBins(bins, 0.9, &out);
  ASSERT_EQ(out.size(), 3);

  EXPECT_EQ(out[0].lower(), 0.0);
  EXPECT_EQ(out[0].upper(), 1.0 / 3);
  EXPECT_EQ(out[0].count(), 4u);
  EXPECT_DOUBLE_EQ(out[0].mean_confidence(), 0.1);
  EXPECT_EQ(out[0].accuracy(), 0.25);
  EXPECT_EQ(std::make_pair(out[0].accuracy_lower(), out[0].accuracy_upper()),
            ClopperPearson(1, 4, 0.9));

  EXPECT_EQ(out[1].lower(), 1.0 / 3);
  EXPECT_EQ(out[1].upper(), 2.0 / 3);
  EXPECT_EQ(out[1].count(), 0u);
  EXPECT_EQ(out[1].mean_confidence(), 0.0);
  EXPECT_EQ(out[1].accuracy(), 0.0);
  EXPECT_EQ(out[1].accuracy_lower(), 0.0);
  EXPECT_EQ(out[1].accuracy_upper(), 0.0);

  EXPECT_EQ(out[2].lower(), 2.0 / 3);
  EXPECT_EQ(out[2].upper(), 1.0);
  EXPECT_EQ(out[2].count(), 3u);
  EXPECT_DOUBLE_EQ(out[2].mean_confidence(), 0.9);
  EXPECT_EQ(out[2].accuracy(), 1.0);
  // All three right: the lower end is (alpha/2)^(1/3) = 0.05^(1/3), the upper end 1.
  EXPECT_NEAR(out[2].accuracy_lower(), std::cbrt(0.05), 1e-12);
  EXPECT_EQ(out[2].accuracy_upper(), 1.0);
}

TEST(AppendEqualWidthBinsTest, AppendsAfterExistingBins) {
  google::protobuf::RepeatedPtrField<v1::ReliabilityBin> out;
  out.Add()->set_count(99);
  AppendEqualWidthBins(std::vector<BinSums>(15), 0.95, &out);
  ASSERT_EQ(out.size(), 16);
  EXPECT_EQ(out[0].count(), 99u);
  for (int m = 0; m < 15; ++m) {
    EXPECT_EQ(out[m + 1].lower(), static_cast<double>(m) / 15);
    EXPECT_EQ(out[m + 1].upper(), static_cast<double>(m + 1) / 15);
  }
}

// --- AppendEqualMassBins ---

// numpy.array_split of the stably sorted samples, written out literally: numpy computes
// Neach, extras = divmod(N, M) and section sizes [Neach + 1] * extras + [Neach] * (M -
// extras). Stability comes from sorting (confidence, arrival index) pairs.
std::vector<std::vector<Sample>> ReferenceEqualMassGroups(
    const std::vector<ConfidenceSample>& samples, uint32_t num_bins) {
  std::vector<size_t> order(samples.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (samples[a].confidence != samples[b].confidence) {
      return samples[a].confidence < samples[b].confidence;
    }
    return a < b;
  });
  const size_t each = samples.size() / num_bins;
  const size_t extras = samples.size() % num_bins;
  std::vector<size_t> div_points = {0};
  for (uint32_t m = 0; m < num_bins; ++m) {
    div_points.push_back(div_points.back() + (m < extras ? each + 1 : each));
  }
  std::vector<std::vector<Sample>> groups;
  for (uint32_t m = 0; m < num_bins; ++m) {
    std::vector<Sample> group;
    for (size_t i = div_points[m]; i < div_points[m + 1]; ++i) {
      group.push_back({samples[order[i]].confidence, samples[order[i]].correct});
    }
    if (!group.empty()) groups.push_back(group);
  }
  return groups;
}

void ExpectEqualMassMatchesReference(std::vector<ConfidenceSample> samples,
                                     uint32_t num_bins, double level) {
  SCOPED_TRACE(testing::Message() << "N=" << samples.size() << " M=" << num_bins);
  const std::vector<std::vector<Sample>> groups =
      ReferenceEqualMassGroups(samples, num_bins);
  google::protobuf::RepeatedPtrField<v1::ReliabilityBin> out;
  const CalibrationErrors errors =
      AppendEqualMassBins(absl::MakeSpan(samples), num_bins, level, &out);

  ASSERT_EQ(out.size(), static_cast<int>(groups.size()));
  ASSERT_EQ(groups.size(), std::min<size_t>(num_bins, samples.size()));
  for (size_t m = 0; m < groups.size(); ++m) {
    const std::vector<Sample>& g = groups[m];
    const v1::ReliabilityBin& bin = out[static_cast<int>(m)];
    double lower = g[0].confidence, upper = g[0].confidence, conf = 0;
    uint64_t positives = 0;
    for (const Sample& s : g) {
      lower = std::min(lower, s.confidence);
      upper = std::max(upper, s.confidence);
      conf += s.confidence;
      positives += static_cast<uint64_t>(s.correct);
    }
    const double n = static_cast<double>(g.size());
    EXPECT_EQ(bin.lower(), lower);
    EXPECT_EQ(bin.upper(), upper);
    EXPECT_EQ(bin.count(), g.size());
    // Summed in another order: within the rounding of a sum of n terms in [0, 1].
    EXPECT_NEAR(bin.mean_confidence(), conf / n, n * 0x1p-53);
    EXPECT_EQ(bin.accuracy(), static_cast<double>(positives) / n);
    EXPECT_EQ(std::make_pair(bin.accuracy_lower(), bin.accuracy_upper()),
              ClopperPearson(positives, g.size(), level));
  }
  ExpectErrorsNear(errors, ReferenceErrors(groups), 1e-12);
}

std::vector<ConfidenceSample> ToConfidenceSamples(const std::vector<Sample>& samples) {
  std::vector<ConfidenceSample> out;
  for (const Sample& s : samples) {
    out.push_back({s.confidence, static_cast<uint8_t>(s.correct)});
  }
  return out;
}

TEST(AppendEqualMassBinsTest, MatchesArraySplitOfSortedSamples) {
  std::mt19937_64 rng(11);
  for (uint32_t num_bins : {1u, 3u, 10u, 15u}) {
    for (size_t n : {size_t{1}, size_t{5}, size_t{14}, size_t{15}, size_t{16}, size_t{30},
                     size_t{1001}, size_t{5000}}) {
      ExpectEqualMassMatchesReference(ToConfidenceSamples(RandomSamples(n, rng)),
                                      num_bins, 0.95);
    }
  }
}

TEST(AppendEqualMassBinsTest, TiesKeepArrivalOrder) {
  // Few distinct confidences with mixed correctness: which tied sample lands in which bin
  // (and so each bin's accuracy) depends on the sort being stable.
  std::mt19937_64 rng(3);
  std::uniform_int_distribution<int> level_of(0, 4);
  std::bernoulli_distribution coin(0.5);
  for (uint32_t num_bins : {2u, 7u, 15u}) {
    std::vector<ConfidenceSample> samples(203);
    for (ConfidenceSample& s : samples) {
      s.confidence = 0.5 + 0.1 * level_of(rng);
      s.correct = coin(rng) ? 1 : 0;
    }
    ExpectEqualMassMatchesReference(samples, num_bins, 0.9);
  }
}

TEST(AppendEqualMassBinsTest, LargeInputsMatchTheStableSortReference) {
  // Large inputs take the selection (few bins: only the buckets across a boundary are
  // sorted) or, with many bins, a radix sort of all N; both must split as the stable
  // sort does: ties in arrival order, over confidences spanning many binades, exact
  // ties, 0 and 1, and runs of neighbouring doubles that the radix digits must descend
  // to the last bit to tell apart.
  std::mt19937_64 rng(17);
  std::uniform_real_distribution<double> unit(0, 1);
  std::bernoulli_distribution coin(0.5);
  for (size_t n : {size_t{2048}, size_t{100003}}) {
    std::vector<ConfidenceSample> samples(n);
    for (ConfidenceSample& s : samples) {
      const double u = unit(rng);
      s.confidence = u < 0.3    ? std::ldexp(unit(rng), -static_cast<int>(rng() % 60))
                     : u < 0.6  ? 0.5 + 0.125 * static_cast<double>(rng() % 4)
                     : u < 0.65 ? (coin(rng) ? 0.0 : 1.0)
                     : u < 0.75 ? 1 - std::ldexp(static_cast<double>(rng() % 64), -53)
                                : unit(rng);
      s.correct = coin(rng) ? 1 : 0;
    }
    for (uint32_t num_bins : {1u, 15u, 100u, 10000u})
      ExpectEqualMassMatchesReference(samples, num_bins, 0.95);
  }
}

TEST(AppendEqualMassBinsTest, AllTiedKeepArrivalOrder) {
  std::vector<ConfidenceSample> samples(50000);
  for (size_t i = 0; i < samples.size(); ++i) {
    samples[i] = {0.75, static_cast<uint8_t>(i % 3 == 0 ? 1 : 0)};
  }
  for (uint32_t num_bins : {7u, 15u, 10000u})
    ExpectEqualMassMatchesReference(samples, num_bins, 0.95);
}

TEST(AppendEqualMassBinsTest, SignedZerosTieInArrivalOrder) {
  // -0 and +0 are equal: the stable order keeps them as they came, so a bin's lower is
  // the first of them and its upper the last.
  for (bool negative_first : {true, false}) {
    const double first = negative_first ? -0.0 : 0.0;
    const double second = negative_first ? 0.0 : -0.0;
    std::vector<ConfidenceSample> samples = {{first, 1}, {second, 0}, {first, 0}};
    google::protobuf::RepeatedPtrField<v1::ReliabilityBin> out;
    AppendEqualMassBins(absl::MakeSpan(samples), 1, 0.95, &out);
    ASSERT_EQ(out.size(), 1);
    EXPECT_EQ(std::signbit(out[0].lower()), std::signbit(first));
    EXPECT_EQ(std::signbit(out[0].upper()), std::signbit(first));
    samples = {{first, 1}, {second, 0}};
    out.Clear();
    AppendEqualMassBins(absl::MakeSpan(samples), 1, 0.95, &out);
    EXPECT_EQ(std::signbit(out[0].lower()), std::signbit(first));
    EXPECT_EQ(std::signbit(out[0].upper()), std::signbit(second));
  }
}

TEST(AppendEqualMassBinsTest, HandCheckedSplit) {
  // Sorted: 0.1(1) 0.2(0) 0.3(0) 0.4(1) 0.6(1) 0.8(1) 0.9(0); N = 7, M = 3 -> 3, 2, 2.
  std::vector<ConfidenceSample> samples = {{0.9, 0}, {0.3, 0}, {0.1, 1}, {0.6, 1},
                                           {0.2, 0}, {0.8, 1}, {0.4, 1}};
  google::protobuf::RepeatedPtrField<v1::ReliabilityBin> out;
  const CalibrationErrors e = AppendEqualMassBins(absl::MakeSpan(samples), 3, 0.95, &out);
  ASSERT_EQ(out.size(), 3);
  EXPECT_EQ(out[0].count(), 3u);
  EXPECT_EQ(out[0].lower(), 0.1);
  EXPECT_EQ(out[0].upper(), 0.3);
  EXPECT_NEAR(out[0].accuracy(), 1.0 / 3, 1e-15);
  EXPECT_EQ(out[1].count(), 2u);
  EXPECT_EQ(out[1].lower(), 0.4);
  EXPECT_EQ(out[1].upper(), 0.6);
  EXPECT_EQ(out[1].accuracy(), 1.0);
  EXPECT_EQ(out[2].count(), 2u);
  EXPECT_EQ(out[2].lower(), 0.8);
  EXPECT_EQ(out[2].upper(), 0.9);
  EXPECT_EQ(out[2].accuracy(), 0.5);
  // gaps: |1/3 - 0.2|, |1 - 0.5|, |0.5 - 0.85| with weights 3/7, 2/7, 2/7.
  EXPECT_NEAR(e.ece, (3 * (2.0 / 15) + 2 * 0.5 + 2 * 0.35) / 7, 1e-15);
  EXPECT_NEAR(e.mce, 0.5, 1e-15);
}

TEST(AppendEqualMassBinsTest, NoSamplesAppendNothing) {
  std::vector<ConfidenceSample> samples;
  google::protobuf::RepeatedPtrField<v1::ReliabilityBin> out;
  const CalibrationErrors e =
      AppendEqualMassBins(absl::MakeSpan(samples), 15, 0.95, &out);
  EXPECT_EQ(out.size(), 0);
  EXPECT_EQ(e.ece, 0.0);
  EXPECT_EQ(e.mce, 0.0);
}

}  // namespace
}  // namespace calib
