#include "server/admission.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace calib {

absl::StatusOr<Admission::Ticket> Admission::Admit() {
  uint64_t now = in_flight_.load();
  do {
    if (max_ != 0 && now >= max_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          now, " evaluations are in flight, the server's limit of ", max_,
          " concurrent evaluations (raise it with --max-concurrent-evaluations)"));
    }
  } while (!in_flight_.compare_exchange_weak(now, now + 1));
  return Ticket(this);
}

}  // namespace calib
