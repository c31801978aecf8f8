// FitStore: every row below the cap, in order; beyond it a reservoir of exactly the
// cap's rows that an independent Algorithm R over ReservoirDraw reproduces slot for
// slot, whatever the batch split; inclusion uniform over the rows (chi-square over many
// seeds); the reservation covers what is kept and never the rows beyond the cap.
#include "src/fit_store.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "src/labels.h"

namespace calib {
namespace {

using ::testing::HasSubstr;

constexpr uint32_t kClasses = 2;
// Bytes of a kept row: two float32 logits and one int32 label.
constexpr uint64_t kRowBytes = kClasses * 4 + 4;
constexpr uint64_t kExtra = 32;

// Row r has logits (r, -r), so a kept row tells which it was; its label is r % 2, or
// ignored when `ignored(r)`.
struct Rows {
  std::vector<float> logits;
  std::vector<int32_t> labels;
  template <typename Ignored>
  Rows(uint64_t n, Ignored ignored) {
    for (uint64_t r = 0; r < n; ++r) {
      logits.push_back(static_cast<float>(r));
      logits.push_back(-static_cast<float>(r));
      labels.push_back(ignored(r) ? kIgnoredLabel : static_cast<int32_t>(r % 2));
    }
  }
  explicit Rows(uint64_t n) : Rows(n, [](uint64_t) { return false; }) {}
  uint64_t size() const { return labels.size(); }
};

// Offers rows [first, end) in batches of `batch` rows, calling after_batch() after each.
absl::Status Offer(
    FitStore& store, const Rows& rows, uint64_t batch, uint64_t first = 0,
    uint64_t end = ~uint64_t{0}, const std::function<void()>& after_batch = [] {}) {
  end = std::min<uint64_t>(end, rows.size());
  for (uint64_t begin = first; begin < end; begin += batch) {
    const uint64_t n = std::min(batch, end - begin);
    absl::Status s = store.Add(
        v1::DTYPE_FLOAT32, reinterpret_cast<const char*>(&rows.logits[begin * kClasses]),
        &rows.labels[begin], n);
    if (!s.ok()) return s;
    after_batch();
  }
  return absl::OkStatus();
}

std::vector<uint64_t> KeptIds(const FitStore& store) {
  const RowSource kept = store.rows();
  std::vector<uint64_t> ids;
  for (uint64_t r = 0; r < kept.rows; ++r) {
    float z;
    std::memcpy(&z, kept.logits + r * kClasses * 4, 4);
    ids.push_back(static_cast<uint64_t>(z));
  }
  return ids;
}

// Algorithm R as in Vitter (1985), written here over the same draws.
std::vector<uint64_t> ReferenceReservoir(uint64_t seed, const std::vector<uint64_t>& ids,
                                         uint64_t capacity) {
  std::vector<uint64_t> kept;
  for (uint64_t i = 0; i < ids.size(); ++i) {
    if (i < capacity) {
      kept.push_back(ids[i]);
    } else if (const uint64_t j = ReservoirDraw(seed, i); j < capacity) {
      kept[j] = ids[i];
    }
  }
  return kept;
}

TEST(FitStoreTest, KeepsEveryRowWithASampleInOrderBelowTheCap) {
  MemoryReservation reservation(nullptr);
  FitStore store(1 << 20, 7, kClasses, 1, kExtra, &reservation);
  const Rows rows(100, [](uint64_t r) { return r % 10 == 3; });
  ASSERT_TRUE(Offer(store, rows, 33).ok());
  std::vector<uint64_t> expected;
  for (uint64_t r = 0; r < 100; ++r) {
    if (r % 10 != 3) expected.push_back(r);
  }
  EXPECT_EQ(KeptIds(store), expected);
  EXPECT_EQ(store.kept(), 90u);
  EXPECT_EQ(store.offered(), 90u);
  EXPECT_EQ(store.samples(), 90u);
  EXPECT_FALSE(store.sampled());
  EXPECT_EQ(store.row_bytes(), kRowBytes);
  EXPECT_GE(reservation.bytes(), 90 * (kRowBytes + kExtra));
}

TEST(FitStoreTest, BeyondTheCapKeepsAReservoirWhateverTheBatchSplit) {
  constexpr uint64_t kCapacity = 100;
  constexpr uint64_t kRows = 10000;
  const Rows rows(kRows);
  std::vector<uint64_t> all(kRows);
  for (uint64_t r = 0; r < kRows; ++r) all[r] = r;
  const std::vector<uint64_t> expected = ReferenceReservoir(42, all, kCapacity);
  for (uint64_t batch : {kRows, uint64_t{37}, uint64_t{1}}) {
    MemoryReservation reservation(nullptr);
    // A cap that is not a whole number of rows rounds down.
    FitStore store(kCapacity * kRowBytes + kRowBytes - 1, 42, kClasses, 1, kExtra,
                   &reservation);
    ASSERT_TRUE(Offer(store, rows, batch).ok());
    EXPECT_EQ(KeptIds(store), expected) << "batches of " << batch;
    EXPECT_EQ(store.kept(), kCapacity);
    EXPECT_EQ(store.offered(), kRows);
    EXPECT_EQ(store.samples(), kCapacity);
    EXPECT_TRUE(store.sampled());
    // Reserved: the kept rows, never the rows beyond the cap.
    EXPECT_EQ(reservation.bytes(), kCapacity * (kRowBytes + kExtra));
  }
  // Distinct rows, and some from late in the stream.
  const std::set<uint64_t> distinct(expected.begin(), expected.end());
  EXPECT_EQ(distinct.size(), kCapacity);
  EXPECT_GT(*distinct.rbegin(), kRows / 2);
}

TEST(FitStoreTest, IgnoredRowsAreNotOfferedAndSamplesFollowReplacements) {
  // Multi-label rows of 2 labels: a row is offered when one of them is not ignored.
  MemoryReservation reservation(nullptr);
  std::vector<float> logits;
  std::vector<int32_t> labels;
  std::vector<uint64_t> offered_ids;
  std::vector<int> samples_of;
  for (uint64_t r = 0; r < 500; ++r) {
    logits.push_back(static_cast<float>(r));
    logits.push_back(0);
    const int kind = static_cast<int>(r % 3);  // 0: both ignored, 1: one, 2: none
    labels.push_back(kind == 2 ? 1 : kIgnoredLabel);
    labels.push_back(kind == 0 ? kIgnoredLabel : 0);
    samples_of.push_back(kind);
    if (kind != 0) offered_ids.push_back(r);
  }
  const std::vector<uint64_t> kept = ReferenceReservoir(3, offered_ids, 10);
  uint64_t samples = 0;
  for (uint64_t id : kept) samples += samples_of[id];
  // Whole, and in batches that end on and between ignored rows and across the cap.
  for (uint64_t batch : {500, 1, 7, 14}) {
    FitStore store(10 * (kClasses * 4 + 8), 3, kClasses, 2, 0, &reservation);
    for (uint64_t begin = 0; begin < 500; begin += batch) {
      const uint64_t n = std::min<uint64_t>(batch, 500 - begin);
      ASSERT_TRUE(store
                      .Add(v1::DTYPE_FLOAT32,
                           reinterpret_cast<const char*>(&logits[begin * kClasses]),
                           &labels[begin * 2], n)
                      .ok());
    }
    EXPECT_EQ(KeptIds(store), kept) << "batches of " << batch;
    EXPECT_EQ(store.samples(), samples) << "batches of " << batch;
    EXPECT_EQ(store.offered(), offered_ids.size()) << "batches of " << batch;
  }
}

TEST(FitStoreTest, EveryRowIsEquallyLikelyToBeKept) {
  // 20 of 200 rows, over 5000 seeds: each row is kept 500 times in expectation.
  constexpr uint64_t kRows = 200, kCapacity = 20, kSeeds = 5000;
  const Rows rows(kRows);
  std::vector<double> count(kRows, 0);
  for (uint64_t seed = 0; seed < kSeeds; ++seed) {
    MemoryReservation reservation(nullptr);
    FitStore store(kCapacity * kRowBytes, seed, kClasses, 1, 0, &reservation);
    ASSERT_TRUE(Offer(store, rows, kRows).ok());
    for (uint64_t id : KeptIds(store)) ++count[id];
  }
  const double expected = double{kSeeds} * kCapacity / kRows;
  const double variance = expected * (1 - double{kCapacity} / kRows);
  double chi2 = 0, first_half = 0;
  for (uint64_t r = 0; r < kRows; ++r) {
    chi2 += (count[r] - expected) * (count[r] - expected) / variance;
    if (r < kRows / 2) first_half += count[r];
  }
  // About chi-square with 199 degrees of freedom: mean 199, sd 20; 6 sd above.
  EXPECT_LT(chi2, 199 + 6 * 20.0);
  // The first half's share is hypergeometric per seed: sd 150 over the seeds.
  EXPECT_NEAR(first_half, kSeeds * kCapacity / 2.0, 6 * 150.0);
}

TEST(FitStoreTest, ReservoirDrawIsUniform) {
  // Draws for index 6 are uniform over 0..6: 10000 each in expectation.
  std::vector<double> count(7, 0);
  for (uint64_t seed = 0; seed < 70000; ++seed) {
    const uint64_t d = ReservoirDraw(seed, 6);
    ASSERT_LE(d, 6u);
    ++count[d];
  }
  double chi2 = 0;
  for (double c : count) chi2 += (c - 10000) * (c - 10000) / 10000;
  EXPECT_LT(chi2, 35.0);  // chi-square, 6 degrees of freedom: p < 1e-5 above 35
  EXPECT_EQ(ReservoirDraw(0, 0), 0u);
}

TEST(FitStoreTest, GrowthIsReservedAndRefusedWhenTheBudgetIsFull) {
  MemoryBudget budget(5000, "--memory-budget-bytes");
  MemoryReservation reservation(&budget);
  FitStore store(1 << 20, 1, kClasses, 1, kExtra, &reservation);
  const absl::Status status = Offer(store, Rows(1000), 1000);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), HasSubstr("the fit store"));
  EXPECT_THAT(status.message(), HasSubstr("--memory-budget-bytes"));
  EXPECT_LE(budget.reserved(), 5000u);
  EXPECT_EQ(reservation.bytes(), budget.reserved());
}

TEST(FitStoreTest, ExpectedRowsGetRoomAtTheFirstBatchWithinTheCapAndTheBudget) {
  const Rows rows(5000);
  MemoryReservation plain_reservation(nullptr);
  FitStore plain(1 << 20, 9, kClasses, 1, kExtra, &plain_reservation);
  ASSERT_TRUE(Offer(plain, rows, 10).ok());

  MemoryReservation reservation(nullptr);
  FitStore store(1 << 20, 9, kClasses, 1, kExtra, &reservation, 5000);
  ASSERT_TRUE(Offer(store, Rows(100), 100).ok());
  EXPECT_EQ(reservation.bytes(), 5000 * (kRowBytes + kExtra));
  const char* first = store.rows().logits;
  // The rest of the rows, in small batches: no growth, so the rows never move.
  ASSERT_TRUE(Offer(store, rows, 10, 100).ok());
  EXPECT_EQ(store.rows().logits, first);
  EXPECT_EQ(KeptIds(store), KeptIds(plain));

  // A claim far beyond the first batch is trusted up to 128 times its rows: after 1 row,
  // the room it would have had anyway (1024 rows); after 20, 2560.
  for (const uint64_t first_rows : {uint64_t{1}, uint64_t{20}}) {
    MemoryReservation claimed_reservation(nullptr);
    FitStore claimed(1 << 20, 9, kClasses, 1, kExtra, &claimed_reservation,
                     uint64_t{1} << 60);
    ASSERT_TRUE(Offer(claimed, Rows(first_rows), first_rows).ok());
    EXPECT_EQ(claimed_reservation.bytes(),
              std::max<uint64_t>(1024, 128 * first_rows) * (kRowBytes + kExtra));
  }

  // More than the cap holds: room for the cap's rows only.
  MemoryReservation capped_reservation(nullptr);
  FitStore capped(100 * kRowBytes, 9, kClasses, 1, kExtra, &capped_reservation, 5000);
  ASSERT_TRUE(Offer(capped, rows, 10).ok());
  EXPECT_EQ(capped_reservation.bytes(), 100 * (kRowBytes + kExtra));

  // More than the budget allows: the store grows as it would without the hint, by
  // doubling (its rows move as often), not by each batch's rows.
  uint64_t moves[2] = {0, 0};
  for (uint64_t hint : {uint64_t{0}, uint64_t{5000}}) {
    // Room for 2048 rows doubled up to, not for 5000.
    MemoryBudget budget(200'000, "--memory-budget-bytes");
    MemoryReservation budget_reservation(&budget);
    FitStore budgeted(1 << 20, 9, kClasses, 1, kExtra, &budget_reservation, hint);
    const char* at = nullptr;
    ASSERT_TRUE(Offer(budgeted, rows, 10, 0, 2000, [&] {
                  if (budgeted.rows().logits != at) ++moves[hint == 0 ? 0 : 1];
                  at = budgeted.rows().logits;
                }).ok());
    EXPECT_EQ(KeptIds(budgeted).size(), 2000u);
  }
  EXPECT_EQ(moves[1], moves[0]);
  EXPECT_LE(moves[0], 2u);
}

TEST(FitStoreTest, ACapBelowOneRowStillKeepsOne) {
  MemoryReservation reservation(nullptr);
  FitStore store(1, 5, kClasses, 1, 0, &reservation);
  ASSERT_TRUE(Offer(store, Rows(50), 7).ok());
  EXPECT_EQ(store.kept(), 1u);
  EXPECT_EQ(KeptIds(store), ReferenceReservoir(
                                5,
                                [] {
                                  std::vector<uint64_t> ids(50);
                                  for (uint64_t r = 0; r < 50; ++r) ids[r] = r;
                                  return ids;
                                }(),
                                1));
}

}  // namespace
}  // namespace calib
