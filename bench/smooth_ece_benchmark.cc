// SmoothEce on N samples of three shapes: calibrated (a ~ Bernoulli(c)), where sigma* is
// smallest and the search longest, over-confident and under-confident. metrics.md asks
// for well under a second at a million samples.
#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "src/smooth_ece.h"

namespace calib {
namespace {

enum Shape { kCalibrated, kOverconfident, kUnderconfident };

std::vector<ConfidenceSample> MakeSamples(int64_t n, Shape shape) {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> uniform(0, 1);
  std::vector<ConfidenceSample> samples(n);
  for (ConfidenceSample& s : samples) {
    const double c = 0.5 + 0.5 * uniform(rng);
    const double p = shape == kCalibrated      ? c
                     : shape == kOverconfident ? c * c
                                               : std::min(1.0, 1.3 * c);
    s = {c, static_cast<uint8_t>(uniform(rng) < p)};
  }
  return samples;
}

void BM_SmoothEce(benchmark::State& state) {
  const std::vector<ConfidenceSample> samples =
      MakeSamples(state.range(0), static_cast<Shape>(state.range(1)));
  for (auto _ : state) benchmark::DoNotOptimize(SmoothEce(samples));
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_SmoothEce)
    ->ArgNames({"n", "shape"})
    ->ArgsProduct({{1000, 1000000}, {kCalibrated, kOverconfident, kUnderconfident}})
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace calib
