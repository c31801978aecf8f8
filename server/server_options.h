// ServerOptions: calibd's command line, parsed and checked once in main(). Only the flags
// this version implements are accepted; anything else is an error naming it.
// Plain value type, safe to share between threads once built.
#ifndef CALIB_SERVER_SERVER_OPTIONS_H_
#define CALIB_SERVER_SERVER_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace calib {

struct ServerOptions {
  std::string listen = "0.0.0.0:50051";
  int threads = 0;  // 0 is resolved to the hardware concurrency by the parser
  uint64_t max_message_bytes = 64 << 20;
  uint64_t max_rows = 0;                             // 0: unlimited
  uint32_t max_classes = 0;                          // 0: unlimited
  uint64_t max_concurrent_evaluations = 0;           // 0: unlimited
  uint64_t memory_budget_bytes = uint64_t{1} << 30;  // 0: unlimited
  uint64_t fit_store_bytes = uint64_t{256} << 20;    // per evaluation
  std::string metrics_listen;                        // empty: no /metrics
  bool reflection = true;
  double grace_seconds = 20;
  bool help = false;
};

// `args` excludes argv[0]. INVALID_ARGUMENT naming the flag and value that is wrong.
absl::StatusOr<ServerOptions> ParseServerOptions(const std::vector<std::string>& args);

// The --help text.
std::string ServerUsage();

}  // namespace calib

#endif  // CALIB_SERVER_SERVER_OPTIONS_H_
