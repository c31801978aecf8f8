// MemoryBudget and MemoryReservation: the accounting adds up, a reservation over the
// limit is refused whole with a message naming the limit and the flag, a reservation is
// given back when its owner ends, and many threads at once never push the total past
// the limit.
#include "src/memory_budget.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace calib {
namespace {

using ::testing::HasSubstr;

TEST(MemoryBudgetTest, ReservesUpToTheLimitAndNoFurther) {
  MemoryBudget budget(1000, "--memory-budget-bytes");
  EXPECT_TRUE(budget.Reserve(600, "a store").ok());
  EXPECT_TRUE(budget.Reserve(400, "a store").ok());
  EXPECT_EQ(budget.reserved(), 1000u);
  const absl::Status over = budget.Reserve(1, "the fit store");
  EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(over.message(), HasSubstr("1 more bytes for the fit store"));
  EXPECT_THAT(over.message(), HasSubstr("1000 of the server's memory budget of 1000"));
  EXPECT_THAT(over.message(), HasSubstr("raise it with --memory-budget-bytes"));
  EXPECT_EQ(budget.reserved(), 1000u);  // a refusal takes nothing
  budget.Release(400);
  EXPECT_EQ(budget.reserved(), 600u);
  // More than the whole limit, even with nothing reserved: no overflow of the check.
  budget.Release(600);
  EXPECT_EQ(budget.Reserve(UINT64_MAX, "x").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(budget.reserved(), 0u);
}

TEST(MemoryBudgetTest, ZeroMeansNoLimitButStillCounts) {
  MemoryBudget budget(0, "--memory-budget-bytes");
  EXPECT_TRUE(budget.Reserve(uint64_t{1} << 50, "x").ok());
  EXPECT_EQ(budget.reserved(), uint64_t{1} << 50);
  EXPECT_EQ(budget.limit(), 0u);
}

TEST(MemoryReservationTest, GrowsShrinksAndGivesEverythingBackAtTheEnd) {
  MemoryBudget budget(100, "--flag");
  {
    MemoryReservation reservation(&budget);
    EXPECT_TRUE(reservation.Grow(70, "a").ok());
    EXPECT_EQ(reservation.Grow(31, "b").code(), absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(reservation.bytes(), 70u);
    reservation.Shrink(20);
    EXPECT_EQ(reservation.bytes(), 50u);
    EXPECT_EQ(budget.reserved(), 50u);
    MemoryReservation other(&budget);
    EXPECT_TRUE(other.Grow(50, "c").ok());
    EXPECT_EQ(budget.reserved(), 100u);
  }
  EXPECT_EQ(budget.reserved(), 0u);
  // Without a budget the bytes are only counted.
  MemoryReservation counted(nullptr);
  EXPECT_TRUE(counted.Grow(uint64_t{1} << 40, "a").ok());
  EXPECT_EQ(counted.bytes(), uint64_t{1} << 40);
}

TEST(MemoryBudgetTest, ConcurrentReservationsNeverPassTheLimit) {
  constexpr uint64_t kLimit = 64;
  MemoryBudget budget(kLimit, "--flag");
  std::atomic<uint64_t> granted{0};
  std::atomic<uint64_t> refused{0};
  std::atomic<bool> over{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20000; ++i) {
        const uint64_t bytes = 1 + (i + t) % 7;
        if (budget.Reserve(bytes, "x").ok()) {
          ++granted;
          if (budget.reserved() > kLimit) over = true;
          budget.Release(bytes);
        } else {
          ++refused;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_FALSE(over);
  EXPECT_EQ(granted + refused, 8u * 20000u);
  EXPECT_GT(granted, 0u);
  EXPECT_EQ(budget.reserved(), 0u);
}

}  // namespace
}  // namespace calib
