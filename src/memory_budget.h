// MemoryBudget: the bytes that every evaluation of a process may hold at once. An
// evaluation reserves before it grows a store and releases when it shrinks or ends;
// a reservation that would go over the limit fails with RESOURCE_EXHAUSTED naming the
// limit and `how_to_raise` (the server's flag). Thread-safe: one budget serves every
// evaluation. MemoryReservation is one evaluation's share, released on destruction;
// like the Evaluator that owns it, it is used by one thread at a time.
#ifndef CALIB_SRC_MEMORY_BUDGET_H_
#define CALIB_SRC_MEMORY_BUDGET_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace calib {

class MemoryBudget {
 public:
  // `limit_bytes` 0: no limit, the reservations are only counted.
  MemoryBudget(uint64_t limit_bytes, std::string how_to_raise)
      : limit_(limit_bytes), how_to_raise_(std::move(how_to_raise)) {}
  MemoryBudget(const MemoryBudget&) = delete;
  MemoryBudget& operator=(const MemoryBudget&) = delete;

  // Adds `bytes` to the reserved total, or leaves it as it is and returns
  // RESOURCE_EXHAUSTED saying what they were for (`what`, e.g. "the fit store").
  absl::Status Reserve(uint64_t bytes, absl::string_view what);
  void Release(uint64_t bytes);

  uint64_t reserved() const { return reserved_.load(std::memory_order_relaxed); }
  uint64_t limit() const { return limit_; }

 private:
  const uint64_t limit_;
  const std::string how_to_raise_;
  std::atomic<uint64_t> reserved_{0};
};

class MemoryReservation {
 public:
  // `budget` null: the bytes are only counted. Otherwise it must outlive this.
  explicit MemoryReservation(MemoryBudget* budget) : budget_(budget) {}
  MemoryReservation(const MemoryReservation&) = delete;
  MemoryReservation& operator=(const MemoryReservation&) = delete;
  ~MemoryReservation() { Shrink(bytes_); }

  absl::Status Grow(uint64_t bytes, absl::string_view what);
  // `bytes` at most bytes().
  void Shrink(uint64_t bytes);
  uint64_t bytes() const { return bytes_; }

 private:
  MemoryBudget* const budget_;
  uint64_t bytes_ = 0;
};

}  // namespace calib

#endif  // CALIB_SRC_MEMORY_BUDGET_H_
