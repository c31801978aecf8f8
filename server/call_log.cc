#include "server/call_log.h"

#include <unistd.h>

#include <mutex>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace calib {

CallLog::CallLog(std::string method, std::string peer, Kind kind)
    : method_(std::move(method)),
      peer_(std::move(peer)),
      kind_(kind),
      start_(std::chrono::steady_clock::now()) {}

double CallLog::Seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void CallLog::Write(grpc::StatusCode code) const {
  const double seconds = Seconds();
  // The codes are absl's; absl names them as gRPC does ("INVALID_ARGUMENT").
  const std::string messages =
      kind_ == Kind::kClientStream ? absl::StrFormat(" messages=%d", messages_) : "";
  const std::string line = absl::StrFormat(
      "calibd call method=%s peer=%s samples=%d bytes=%d%s status=%s seconds=%.3f\n",
      method_, peer_.empty() ? "-" : peer_, samples_, bytes_, messages,
      absl::StatusCodeToString(static_cast<absl::StatusCode>(code)), seconds);
  // One write(2) per line under a lock, so lines of concurrent calls never interleave.
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(STDERR_FILENO, line.data() + done, line.size() - done);
    if (n <= 0) break;  // a closed stderr must not take the server down
    done += static_cast<size_t>(n);
  }
}

}  // namespace calib
