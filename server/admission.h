// Admission: calibd's --max-concurrent-evaluations. An evaluation holds a Ticket from
// its config to its end; past the limit, Admit refuses with RESOURCE_EXHAUSTED naming
// the limit and the flag. Admission is thread-safe; a Ticket belongs to one call and
// gives its place back when destroyed (the Admission must outlive it).
#ifndef CALIB_SERVER_ADMISSION_H_
#define CALIB_SERVER_ADMISSION_H_

#include <atomic>
#include <cstdint>

#include "absl/status/statusor.h"

namespace calib {

class Admission {
 public:
  class Ticket {
   public:
    Ticket(Ticket&& other) noexcept : admission_(other.admission_) {
      other.admission_ = nullptr;
    }
    Ticket& operator=(Ticket&&) = delete;
    ~Ticket() {
      if (admission_ != nullptr) admission_->in_flight_.fetch_sub(1);
    }

   private:
    friend class Admission;
    explicit Ticket(Admission* admission) : admission_(admission) {}
    Admission* admission_;
  };

  // `max_evaluations` 0: no limit, evaluations are only counted.
  explicit Admission(uint64_t max_evaluations) : max_(max_evaluations) {}
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  absl::StatusOr<Ticket> Admit();

  // Evaluations holding a Ticket now.
  uint64_t in_flight() const { return in_flight_.load(); }
  uint64_t limit() const { return max_; }

 private:
  const uint64_t max_;
  std::atomic<uint64_t> in_flight_{0};
};

}  // namespace calib

#endif  // CALIB_SERVER_ADMISSION_H_
