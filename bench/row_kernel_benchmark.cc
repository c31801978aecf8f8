// The Evaluator's row pass and its temperature fit over the shapes and dtypes,
// on 2 threads, with two ceilings on the same buffer and thread count: a Highway read
// (sum) of the logits (memory bandwidth) and Highway's float32 Exp over as many
// elements. Inputs are built and touched once, outside the timed loops. The CPU column
// is the process's (both threads): on a shared machine, elements per CPU-second is the
// steadier figure. Freed memory is kept as calibd keeps it (glibc's thresholds, and the
// engine's blocks of 32 MiB and more: the fit store, the per-sample pairs), so an
// iteration reuses the pages the previous one freed, whichever shapes ran before, and
// the figures are the arithmetic's, not the page faults' (with glibc's defaults,
// 100,000 x 1,000 alone took 47-49 ms, after 1,000,000 x 10 30-32).
//   build/bench/row_kernel_benchmark --benchmark_filter=1000
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "bench/row_kernel_benchmark.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

// After foreach_target.h: these compile for the target of each pass.
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace calib {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Sum of n floats (n a multiple of 4 vectors), reading each once.
float SumFloats(const float* p, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
  for (size_t k = 0; k + 4 * lanes <= n; k += 4 * lanes) {
    a0 = hn::Add(a0, hn::LoadU(d, p + k));
    a1 = hn::Add(a1, hn::LoadU(d, p + k + lanes));
    a2 = hn::Add(a2, hn::LoadU(d, p + k + 2 * lanes));
    a3 = hn::Add(a3, hn::LoadU(d, p + k + 3 * lanes));
  }
  return hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
}

// Sum of exp over n floats, the throughput of hn::Exp (the data stays in L1: the
// ceiling of the arithmetic, not of memory).
float SumExp(const float* p, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  auto a0 = hn::Zero(d), a1 = hn::Zero(d);
  for (size_t k = 0; k + 2 * lanes <= n; k += 2 * lanes) {
    a0 = hn::Add(a0, hn::Exp(d, hn::LoadU(d, p + k)));
    a1 = hn::Add(a1, hn::Exp(d, hn::LoadU(d, p + k + lanes)));
  }
  return hn::GetLane(hn::SumOfLanes(d, hn::Add(a0, a1)));
}

// The same in float64 lanes: the row pass computes its exponentials in double (float
// exp's 1e-7 relative error would exceed metrics.md's 1e-9 on confidences and bins).
float SumExp64(const float* p, size_t n) {
  const hn::ScalableTag<double> d;
  const hn::Rebind<float, decltype(d)> df;
  const size_t lanes = hn::Lanes(d);
  auto a0 = hn::Zero(d), a1 = hn::Zero(d);
  for (size_t k = 0; k + 2 * lanes <= n; k += 2 * lanes) {
    a0 = hn::Add(a0, hn::Exp(d, hn::PromoteTo(d, hn::LoadU(df, p + k))));
    a1 = hn::Add(a1, hn::Exp(d, hn::PromoteTo(d, hn::LoadU(df, p + k + lanes))));
  }
  return static_cast<float>(hn::GetLane(hn::SumOfLanes(d, hn::Add(a0, a1))));
}

}  // namespace HWY_NAMESPACE
}  // namespace calib
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "oneapi/tbb/parallel_for.h"
#include "oneapi/tbb/task_arena.h"
#include "src/evaluator.h"
#include "src/huge_pages.h"
#include "src/keep_freed_memory.h"
#include "src/row_simd.h"

namespace calib {
namespace {

HWY_EXPORT(SumFloats);
HWY_EXPORT(SumExp);
HWY_EXPORT(SumExp64);

constexpr int kThreads = 2;

struct Shape {
  uint64_t rows;
  uint32_t classes;
};
constexpr Shape kShapes[] = {{1000000, 10}, {100000, 1000}, {4096, 50257}};

uint16_t ToBFloat16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return static_cast<uint16_t>(bits >> 16);
}

// float16 by truncation; the values here are normal and well inside its range.
uint16_t ToHalf(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const int exponent = static_cast<int>((bits >> 23) & 0xff) - 127;
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  if (exponent < -14) return sign;
  return static_cast<uint16_t>(sign | ((exponent + 15) << 10) | ((bits >> 13) & 0x3ff));
}

// N(0, 3) logits and uniform labels, kept for the whole run (one shape and dtype at a
// time: the largest is 823 MB).
struct Data {
  Shape shape{};
  v1::DType dtype = v1::DTYPE_UNSPECIFIED;
  std::string logits;
  std::string labels;
  std::vector<float> floats;  // the logits as float32, for the ceilings
};

const Data& GetData(Shape shape, v1::DType dtype) {
  static Data data;
  if (data.shape.rows == shape.rows && data.shape.classes == shape.classes &&
      data.dtype == dtype) {
    return data;
  }
  data = Data{shape, dtype, {}, {}, {}};
  const uint64_t n = shape.rows * shape.classes;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0, 3);
  data.floats.resize(n);
  for (float& f : data.floats) f = normal(rng);
  if (dtype == v1::DTYPE_FLOAT32) {
    data.logits.assign(reinterpret_cast<const char*>(data.floats.data()), n * 4);
  } else {
    data.logits.resize(n * 2);
    for (uint64_t i = 0; i < n; ++i) {
      const uint16_t h = dtype == v1::DTYPE_FLOAT16 ? ToHalf(data.floats[i])
                                                    : ToBFloat16(data.floats[i]);
      std::memcpy(&data.logits[2 * i], &h, 2);
    }
  }
  std::vector<int32_t> labels(shape.rows);
  for (int32_t& y : labels) y = static_cast<int32_t>(rng() % shape.classes);
  data.labels.assign(reinterpret_cast<const char*>(labels.data()), shape.rows * 4);
  return data;
}

void SetCounters(benchmark::State& state, const Data& data) {
  const int64_t n = static_cast<int64_t>(data.shape.rows * data.shape.classes);
  state.SetItemsProcessed(state.iterations() * n);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(data.logits.size()));
  state.SetLabel(std::string(RowSimdTarget()) + " " + std::to_string(data.shape.rows) +
                 "x" + std::to_string(data.shape.classes));
}

void Evaluate(benchmark::State& state, bool fit) {
  const Shape shape = kShapes[state.range(0)];
  const auto dtype = static_cast<v1::DType>(state.range(1));
  const Data& data = GetData(shape, dtype);
  v1::EvaluationConfig config;
  config.set_num_classes(shape.classes);
  config.set_fit_temperature(fit);
  tbb::task_arena arena(kThreads);
  uint32_t fit_passes = 0;
  const auto evaluate = [&] {
    arena.execute([&] {
      // The fit keeps every row, whatever the dtype: the same work for each.
      StoreLimits limits;
      limits.fit_store_bytes = uint64_t{1} << 40;
      auto evaluator = Evaluator::Create(config, limits);
      if (!evaluator.ok() ||
          !(*evaluator)->Add({dtype, data.logits}, {v1::DTYPE_INT32, data.labels}).ok()) {
        state.SkipWithError("Add failed");
        return;
      }
      auto report = (*evaluator)->Finish();
      if (!report.ok()) {
        state.SkipWithError("Finish failed");
        return;
      }
      fit_passes = report->temperature_scaling().iterations();
      benchmark::DoNotOptimize(report);
    });
  };
  // Once untimed, so that the timed evaluations find the pages it freed and were kept.
  evaluate();
  for (auto _ : state) evaluate();
  SetCounters(state, data);
  if (fit) state.counters["fit_passes"] = fit_passes;
}

void BM_RowPass(benchmark::State& state) { Evaluate(state, false); }
void BM_TemperatureFit(benchmark::State& state) { Evaluate(state, true); }

// A binary model's 2,000,000 logits (SIGMOID, C = 1; N(0, 3), 0/1 targets), a whole
// evaluation with and without the fits: per-sample work (the sigmoid terms, bins, the
// equal-mass bins' selection) is all there is.
void BM_BinaryEvaluation(benchmark::State& state) {
  constexpr uint64_t kRows = 2'000'000;
  static const auto* data = [] {
    auto* d = new std::pair<std::string, std::string>;
    std::mt19937 rng(2);
    std::normal_distribution<float> normal(0, 3);
    std::vector<float> logits(kRows);
    std::vector<int32_t> targets(kRows);
    for (uint64_t i = 0; i < kRows; ++i) {
      logits[i] = normal(rng);
      targets[i] = static_cast<int32_t>(rng() % 2);
    }
    d->first.assign(reinterpret_cast<const char*>(logits.data()), kRows * 4);
    d->second.assign(reinterpret_cast<const char*>(targets.data()), kRows * 4);
    return d;
  }();
  v1::EvaluationConfig config;
  config.set_num_classes(1);
  config.set_activation(v1::ACTIVATION_SIGMOID);
  config.set_fit_temperature(state.range(0) != 0);
  tbb::task_arena arena(kThreads);
  for (auto _ : state) {
    arena.execute([&] {
      auto evaluator = Evaluator::Create(config, StoreLimits{});
      if (!evaluator.ok() ||
          !(*evaluator)
               ->Add({v1::DTYPE_FLOAT32, data->first}, {v1::DTYPE_INT32, data->second})
               .ok()) {
        state.SkipWithError("Add failed");
        return;
      }
      auto report = (*evaluator)->Finish();
      if (!report.ok()) state.SkipWithError("Finish failed");
      benchmark::DoNotOptimize(report);
    });
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kRows));
  state.SetLabel(std::string(RowSimdTarget()) + " 2000000x1 sigmoid");
}

// Runs f(begin, end) over the floats in 2 threads, by 64 Ki-element chunks.
template <typename F>
void OverChunks(const std::vector<float>& floats, const F& f) {
  constexpr size_t kChunk = size_t{1} << 16;
  const size_t chunks = floats.size() / kChunk;
  tbb::parallel_for(size_t{0}, chunks,
                    [&](size_t i) { f(floats.data() + i * kChunk, kChunk); });
}

void BM_ReadCeiling(benchmark::State& state) {
  const Data& data = GetData(kShapes[state.range(0)], v1::DTYPE_FLOAT32);
  tbb::task_arena arena(kThreads);
  for (auto _ : state) {
    arena.execute([&] {
      OverChunks(data.floats, [](const float* p, size_t n) {
        benchmark::DoNotOptimize(HWY_DYNAMIC_DISPATCH(SumFloats)(p, n));
      });
    });
  }
  SetCounters(state, data);
}

template <bool kDouble>
void ExpCeiling(benchmark::State& state) {
  const Data& data = GetData(kShapes[state.range(0)], v1::DTYPE_FLOAT32);
  // Exp over as many elements, from one L1-resident slice, so that memory plays no part.
  const std::vector<float> slice(data.floats.begin(), data.floats.begin() + 4096);
  const size_t repeats = data.floats.size() / slice.size();
  tbb::task_arena arena(kThreads);
  for (auto _ : state) {
    arena.execute([&] {
      tbb::parallel_for(size_t{0}, repeats, [&](size_t) {
        benchmark::DoNotOptimize(
            kDouble ? HWY_DYNAMIC_DISPATCH(SumExp64)(slice.data(), slice.size())
                    : HWY_DYNAMIC_DISPATCH(SumExp)(slice.data(), slice.size()));
      });
    });
  }
  SetCounters(state, data);
}

void BM_ExpCeiling(benchmark::State& state) { ExpCeiling<false>(state); }
void BM_Exp64Ceiling(benchmark::State& state) { ExpCeiling<true>(state); }

void Shapes(benchmark::internal::Benchmark* b) {
  for (int64_t shape = 0; shape < 3; ++shape) {
    for (int64_t dtype : {v1::DTYPE_FLOAT32, v1::DTYPE_FLOAT16, v1::DTYPE_BFLOAT16}) {
      b->Args({shape, dtype});
    }
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
}

void CeilingShapes(benchmark::internal::Benchmark* b) {
  for (int64_t shape = 0; shape < 3; ++shape) b->Args({shape});
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
}

BENCHMARK(BM_ReadCeiling)->Apply(CeilingShapes);
BENCHMARK(BM_ExpCeiling)->Apply(CeilingShapes);
BENCHMARK(BM_Exp64Ceiling)->Apply(CeilingShapes);
BENCHMARK(BM_RowPass)->Apply(Shapes);
BENCHMARK(BM_TemperatureFit)->Apply(Shapes)->Iterations(2);
BENCHMARK(BM_BinaryEvaluation)
    ->ArgName("fit")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime();

}  // namespace
}  // namespace calib

int main(int argc, char** argv) {
  calib::KeepFreedMemory();
  // The largest fit store here (4,096 x 50,257 float32) with its per-sample pairs.
  calib::KeepFreedLargeBlocks(uint64_t{1} << 30);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
#endif  // HWY_ONCE
