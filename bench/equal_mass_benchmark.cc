// AppendEqualMassBins (a radix histogram, then sorting only the buckets across bin
// boundaries) against the std::stable_sort by confidence it replaced, on N sigmoid
// confidences of normal logits (spread over many binades) and N top-label softmax
// confidences (in [0.1, 1]).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "src/reliability_bins.h"

namespace calib {
namespace {

std::vector<ConfidenceSample> MakeSamples(int64_t n, bool sigmoid) {
  std::mt19937_64 rng(42);
  std::normal_distribution<double> normal(0, 2);
  std::uniform_real_distribution<double> uniform(0, 1);
  std::vector<ConfidenceSample> samples(n);
  for (ConfidenceSample& s : samples) {
    const double c =
        sigmoid ? 1 / (1 + std::exp(-normal(rng))) : 0.1 + 0.9 * uniform(rng);
    s = {c, static_cast<uint8_t>(uniform(rng) < c)};
  }
  return samples;
}

void BM_AppendEqualMassBins(benchmark::State& state) {
  const std::vector<ConfidenceSample> samples =
      MakeSamples(state.range(0), state.range(1));
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<ConfidenceSample> copy = samples;
    google::protobuf::RepeatedPtrField<v1::ReliabilityBin> bins;
    state.ResumeTiming();
    benchmark::DoNotOptimize(AppendEqualMassBins(absl::MakeSpan(copy), 15, 0.95, &bins));
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

void BM_StdStableSortBaseline(benchmark::State& state) {
  const std::vector<ConfidenceSample> samples =
      MakeSamples(state.range(0), state.range(1));
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<ConfidenceSample> copy = samples;
    state.ResumeTiming();
    std::stable_sort(copy.begin(), copy.end(),
                     [](const ConfidenceSample& a, const ConfidenceSample& b) {
                       return a.confidence < b.confidence;
                     });
    benchmark::DoNotOptimize(copy.data());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

BENCHMARK(BM_AppendEqualMassBins)
    ->ArgNames({"n", "sigmoid"})
    ->ArgsProduct({{1000000, 2000000}, {0, 1}})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_StdStableSortBaseline)
    ->ArgNames({"n", "sigmoid"})
    ->ArgsProduct({{1000000, 2000000}, {0, 1}})
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace calib
