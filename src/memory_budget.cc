#include "src/memory_budget.h"

#include "absl/strings/str_cat.h"

namespace calib {

absl::Status MemoryBudget::Reserve(uint64_t bytes, absl::string_view what) {
  uint64_t reserved = reserved_.load(std::memory_order_relaxed);
  do {
    if (limit_ != 0 && (bytes > limit_ || reserved > limit_ - bytes)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the evaluation needs ", bytes, " more bytes for ", what, ", but ",
                       reserved, " of the server's memory budget of ", limit_,
                       " bytes are reserved by the evaluations in flight (raise it with ",
                       how_to_raise_, ")"));
    }
  } while (!reserved_.compare_exchange_weak(reserved, reserved + bytes,
                                            std::memory_order_relaxed));
  return absl::OkStatus();
}

void MemoryBudget::Release(uint64_t bytes) {
  reserved_.fetch_sub(bytes, std::memory_order_relaxed);
}

absl::Status MemoryReservation::Grow(uint64_t bytes, absl::string_view what) {
  if (bytes == 0) return absl::OkStatus();
  if (budget_ != nullptr) {
    if (absl::Status status = budget_->Reserve(bytes, what); !status.ok()) return status;
  }
  bytes_ += bytes;
  return absl::OkStatus();
}

void MemoryReservation::Shrink(uint64_t bytes) {
  if (bytes == 0) return;
  if (budget_ != nullptr) budget_->Release(bytes);
  bytes_ -= bytes;
}

}  // namespace calib
