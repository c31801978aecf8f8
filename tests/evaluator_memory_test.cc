// The Evaluator's bounded stores: beyond --fit-store-bytes the fits use a uniform
// reservoir, reported in fit_samples and a warning, and give the same bits as a fit on
// exactly the kept rows (found by an independent Algorithm R) whatever the batch split
// and thread count; the config's expected_rows gives the fit store its room at the
// first batch; every store is reserved against the budget, which refuses with the
// flag's name and gets every byte back; the heap the evaluation holds stays within its
// reservation whatever the input size; a cancelled context ends Add and Finish.
#include <malloc.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "oneapi/tbb/parallel_for.h"
#include "oneapi/tbb/task_arena.h"
#include "oneapi/tbb/task_group.h"
#include "src/evaluator.h"
#include "src/fit_store.h"

namespace calib {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;

constexpr uint32_t kClasses = 4;
// A kept row: 4 float32 logits and an int32 label.
constexpr uint64_t kFitRowBytes = kClasses * 4 + 4;

struct Data {
  std::vector<float> logits;
  std::vector<int64_t> labels;
  uint64_t rows() const { return labels.size(); }
};

Data Random(uint64_t rows, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0, 2);
  Data d;
  for (uint64_t r = 0; r < rows; ++r) {
    for (uint32_t k = 0; k < kClasses; ++k) d.logits.push_back(normal(rng));
    d.labels.push_back(static_cast<int64_t>(rng() % kClasses));
  }
  return d;
}

Data Select(const Data& d, const std::vector<uint64_t>& rows) {
  Data out;
  for (uint64_t r : rows) {
    out.logits.insert(out.logits.end(), d.logits.begin() + r * kClasses,
                      d.logits.begin() + (r + 1) * kClasses);
    out.labels.push_back(d.labels[r]);
  }
  return out;
}

v1::Batch MakeBatch(const Data& d, uint64_t begin, uint64_t end) {
  v1::Batch b;
  b.mutable_logits()->set_dtype(v1::DTYPE_FLOAT32);
  b.mutable_logits()->set_data(
      std::string(reinterpret_cast<const char*>(d.logits.data() + begin * kClasses),
                  (end - begin) * kClasses * sizeof(float)));
  b.mutable_labels()->set_dtype(v1::DTYPE_INT64);
  b.mutable_labels()->set_data(
      std::string(reinterpret_cast<const char*>(d.labels.data() + begin),
                  (end - begin) * sizeof(int64_t)));
  return b;
}

v1::EvaluationConfig FitConfig() {
  v1::EvaluationConfig config;
  config.set_num_classes(kClasses);
  config.set_fit_temperature(true);
  config.set_seed(9);
  return config;
}

absl::StatusOr<v1::Report> Evaluate(const v1::EvaluationConfig& config, const Data& d,
                                    const StoreLimits& limits,
                                    std::vector<uint64_t> cuts = {}, int threads = 2) {
  tbb::task_arena arena(threads);
  absl::StatusOr<v1::Report> out;
  arena.execute([&] {
    auto ev = Evaluator::Create(config, limits);
    if (!ev.ok()) {
      out = ev.status();
      return;
    }
    cuts.push_back(d.rows());
    uint64_t begin = 0;
    for (uint64_t end : cuts) {
      if (absl::Status s = (*ev)->Add(MakeBatch(d, begin, end)); !s.ok()) {
        out = s;
        return;
      }
      begin = end;
    }
    out = (*ev)->Finish();
  });
  return out;
}

// Algorithm R (Vitter 1985) over the rows 0..n-1, with the engine's draws.
std::vector<uint64_t> ReferenceReservoir(uint64_t seed, uint64_t n, uint64_t capacity) {
  std::vector<uint64_t> kept;
  for (uint64_t i = 0; i < n; ++i) {
    if (i < capacity) {
      kept.push_back(i);
    } else if (const uint64_t j = ReservoirDraw(seed, i); j < capacity) {
      kept[j] = i;
    }
  }
  return kept;
}

TEST(EvaluatorMemoryTest, BeyondTheFitStoreCapTheFitUsesAUniformReservoir) {
  constexpr uint64_t kRows = 5000, kKept = 1000;
  const Data d = Random(kRows, 1);
  const StoreLimits capped{.fit_store_bytes = kKept * kFitRowBytes};
  absl::StatusOr<v1::Report> report = Evaluate(FitConfig(), d, capped);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->metrics().num_samples(), kRows);
  const v1::TemperatureScaling& ts = report->temperature_scaling();
  EXPECT_EQ(ts.fit_samples(), kKept);
  EXPECT_EQ(ts.calibrated().num_samples(), kKept);
  EXPECT_THAT(report->warnings(),
              ::testing::Contains(HasSubstr("uniform sample of 1000 of the 5000 rows")));

  // The same bits whatever the batch split and the threads.
  for (int threads : {1, 3}) {
    absl::StatusOr<v1::Report> again =
        Evaluate(FitConfig(), d, capped, {1, 1234, 1235, 4000}, threads);
    ASSERT_TRUE(again.ok());
    EXPECT_TRUE(MessageDifferencer::Equals(*report, *again)) << threads << " threads";
  }

  // The fit is the fit of exactly the rows Algorithm R keeps, in its slot order.
  const Data kept = Select(d, ReferenceReservoir(9, kRows, kKept));
  absl::StatusOr<v1::Report> on_kept = Evaluate(FitConfig(), kept, StoreLimits{});
  ASSERT_TRUE(on_kept.ok());
  EXPECT_TRUE(MessageDifferencer::Equals(ts, on_kept->temperature_scaling()))
      << ts.DebugString() << on_kept->temperature_scaling().DebugString();

  // Below the cap every sample is used and nothing is said.
  absl::StatusOr<v1::Report> whole = Evaluate(FitConfig(), d, StoreLimits{});
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->temperature_scaling().fit_samples(), kRows);
  EXPECT_THAT(whole->warnings(),
              ::testing::Not(::testing::Contains(HasSubstr("uniform sample"))));
}

TEST(EvaluatorMemoryTest, TheConfigsExpectedRowsReserveTheFitStoreAtTheFirstBatch) {
  constexpr uint64_t kRows = 5000;
  const Data d = Random(kRows, 3);
  uint64_t reserved[2] = {0, 0};
  v1::Report reports[2];
  for (const uint64_t hint : {uint64_t{0}, kRows}) {
    v1::EvaluationConfig config = FitConfig();
    config.set_expected_rows(hint);
    MemoryBudget budget(uint64_t{1} << 30, "--memory-budget-bytes");
    tbb::task_arena arena(2);
    arena.execute([&] {
      auto ev = Evaluator::Create(config, {.budget = &budget});
      ASSERT_TRUE(ev.ok()) << ev.status();
      // A first batch of 100 rows: the hint is trusted up to 128 times that.
      ASSERT_TRUE((*ev)->Add(MakeBatch(d, 0, 100)).ok());
      reserved[hint == 0 ? 0 : 1] = budget.reserved();
      ASSERT_TRUE((*ev)->Add(MakeBatch(d, 100, kRows)).ok());
      absl::StatusOr<v1::Report> report = (*ev)->Finish();
      ASSERT_TRUE(report.ok()) << report.status();
      reports[hint == 0 ? 0 : 1] = *report;
    });
  }
  // Room for every expected row at once, and not before: the same report.
  EXPECT_GE(reserved[1] - reserved[0], (kRows - 1024) * kFitRowBytes);
  EXPECT_TRUE(MessageDifferencer::Equals(reports[0], reports[1]));
  EXPECT_EQ(reports[1].temperature_scaling().fit_samples(), kRows);
}

TEST(EvaluatorMemoryTest, PlattScalingUsesTheSameReservoir) {
  // Binary SIGMOID: a row is one float32 logit and one 0/1 target, 8 bytes kept.
  constexpr uint64_t kRows = 3000, kKept = 500;
  std::mt19937_64 rng(6);
  std::normal_distribution<float> normal(0, 2);
  std::vector<float> logits;
  std::vector<int64_t> targets;
  for (uint64_t r = 0; r < kRows; ++r) {
    logits.push_back(normal(rng));
    targets.push_back(static_cast<int64_t>(rng() % 2));
  }
  v1::EvaluationConfig config;
  config.set_num_classes(1);
  config.set_activation(v1::ACTIVATION_SIGMOID);
  config.set_fit_temperature(true);
  v1::Batch batch;
  batch.mutable_logits()->set_data(
      std::string(reinterpret_cast<const char*>(logits.data()), kRows * 4));
  batch.mutable_labels()->set_data(
      std::string(reinterpret_cast<const char*>(targets.data()), kRows * 8));
  tbb::task_arena arena(2);
  arena.execute([&] {
    auto ev = Evaluator::Create(config, {.fit_store_bytes = kKept * 8});
    ASSERT_TRUE(ev.ok());
    ASSERT_TRUE((*ev)->Add(batch).ok());
    absl::StatusOr<v1::Report> report = (*ev)->Finish();
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ(report->metrics().num_samples(), kRows);
    EXPECT_EQ(report->temperature_scaling().fit_samples(), kKept);
    EXPECT_EQ(report->temperature_scaling().calibrated().num_samples(), kKept);
    EXPECT_EQ(report->platt_scaling().calibrated().num_samples(), kKept);
    EXPECT_THAT(report->warnings(),
                ::testing::Contains(HasSubstr(
                    "temperature_scaling and platt_scaling used a uniform sample of 500 "
                    "of the 3000 rows")));
  });
}

TEST(EvaluatorMemoryTest, TheBudgetRefusesNamingTheFlagAndGetsEveryByteBack) {
  const Data d = Random(100000, 2);
  constexpr uint64_t kLimit = 2 << 20;
  MemoryBudget budget(kLimit, "--memory-budget-bytes");
  tbb::task_arena arena(2);
  arena.execute([&] {
    auto ev = Evaluator::Create(FitConfig(), {.budget = &budget});
    ASSERT_TRUE(ev.ok()) << ev.status();
    EXPECT_EQ((*ev)->reserved_bytes(), budget.reserved());
    absl::Status status;
    for (uint64_t begin = 0; begin < d.rows() && status.ok(); begin += 5000) {
      status = (*ev)->Add(MakeBatch(d, begin, begin + 5000));
      EXPECT_LE(budget.reserved(), kLimit);
    }
    EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
    EXPECT_THAT(status.message(), HasSubstr("raise it with --memory-budget-bytes"));
    EXPECT_THAT(status.message(), HasSubstr("memory budget of 2097152 bytes"));
  });
  EXPECT_EQ(budget.reserved(), 0u);

  // Accumulators a config asks for are reserved before they are built.
  v1::EvaluationConfig huge = FitConfig();
  huge.set_num_bins(10000);
  huge.set_bootstrap_samples(10000);
  arena.execute([&] {
    const absl::Status refused = Evaluator::Create(huge, {.budget = &budget}).status();
    EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
    EXPECT_THAT(refused.message(), HasSubstr("accumulators"));
    EXPECT_THAT(refused.message(), HasSubstr("bootstrap_samples 10000"));
  });
  EXPECT_EQ(budget.reserved(), 0u);
}

#if !defined(__SANITIZE_ADDRESS__)
// Bytes the heap holds: small blocks and mmapped ones.
uint64_t HeapBytes() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}
#endif

TEST(EvaluatorMemoryTest, HeldMemoryStaysWithinTheReservationWhateverTheInputSize) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer's allocator does not report through mallinfo2";
#else
  constexpr uint64_t kBatch = 50000, kBatches = 20;
  constexpr uint64_t kFitBytes = 2 << 20;
  // Room for O(1) objects and oneTBB's own: tasks, the arena's bookkeeping.
  constexpr uint64_t kSlack = 1 << 20;
  const Data d = Random(kBatch, 3);
  const v1::Batch batch = MakeBatch(d, 0, kBatch);
  tbb::task_arena arena(2);
  arena.execute([&] {
    // Warm oneTBB up, so that its first-use allocations are not counted.
    ASSERT_TRUE(Evaluate(FitConfig(), Random(3000, 4), {}).ok());
    const uint64_t before = HeapBytes();
    {
      auto ev = Evaluator::Create(FitConfig(), {.fit_store_bytes = kFitBytes});
      ASSERT_TRUE(ev.ok());
      const uint64_t fixed = (*ev)->reserved_bytes();
      for (uint64_t b = 0; b < kBatches; ++b) {
        ASSERT_TRUE((*ev)->Add(batch).ok());
        const uint64_t held = HeapBytes() - before;
        const uint64_t reserved = (*ev)->reserved_bytes();
        EXPECT_LE(held, reserved + kSlack) << "after batch " << b;
        // The stated formula (README): 32 bytes a sample, the fit store up to its cap
        // with 32 bytes a kept row for the recomputation, the batch's labels, and up to
        // half again of each while it grows.
        const uint64_t samples = (b + 1) * kBatch;
        const uint64_t kept = std::min(samples, kFitBytes / kFitRowBytes);
        EXPECT_LE(
            reserved,
            fixed + (32 * samples + (kFitRowBytes + 32) * kept + 4 * kBatch) * 3 / 2)
            << "after batch " << b;
      }
      absl::StatusOr<v1::Report> report = (*ev)->Finish();
      ASSERT_TRUE(report.ok());
      EXPECT_LE(HeapBytes() - before,
                (*ev)->reserved_bytes() + report->ByteSizeLong() + kSlack);
      EXPECT_EQ(report->temperature_scaling().fit_samples(), kFitBytes / kFitRowBytes);
    }
    EXPECT_LE(HeapBytes(), before + kSlack);
  });
#endif
}

TEST(EvaluatorMemoryTest, ACancelledContextEndsAddAndFinish) {
  const Data d = Random(20000, 5);
  tbb::task_arena arena(2);
  arena.execute([&] {
    auto ev = Evaluator::Create(FitConfig());
    ASSERT_TRUE(ev.ok());
    ASSERT_TRUE((*ev)->Add(MakeBatch(d, 0, 10000)).ok());
    tbb::task_group_context context(tbb::task_group_context::isolated);
    absl::Status added;
    tbb::parallel_for(
        0, 1,
        [&](int) {
          context.cancel_group_execution();
          added = (*ev)->Add(MakeBatch(d, 10000, 20000));
        },
        context);
    EXPECT_EQ(added.code(), absl::StatusCode::kCancelled);
    EXPECT_EQ((*ev)->Finish().status().code(), absl::StatusCode::kFailedPrecondition);

    auto finishing = Evaluator::Create(FitConfig());
    ASSERT_TRUE((*finishing)->Add(MakeBatch(d, 0, 20000)).ok());
    tbb::task_group_context other(tbb::task_group_context::isolated);
    absl::StatusOr<v1::Report> report;
    tbb::parallel_for(
        0, 1,
        [&](int) {
          other.cancel_group_execution();
          report = (*finishing)->Finish();
        },
        other);
    EXPECT_EQ(report.status().code(), absl::StatusCode::kCancelled);
  });
}

}  // namespace
}  // namespace calib
