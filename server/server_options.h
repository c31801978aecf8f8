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
  bool reflection = true;  // off by default when a token is required (see the parser)
  double grace_seconds = 20;
  // TLS: all empty serves plaintext. tls_client_ca set requires client certificates
  // that it signed (mutual TLS); it needs tls_cert and tls_key.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  std::string auth_token_file;  // empty: no token checked
  // Connections, sized for Kubernetes: see ServerUsage() for why each value.
  uint64_t keepalive_seconds = 30;
  uint64_t keepalive_timeout_seconds = 10;
  uint64_t max_connection_age_seconds = 300;      // 0: connections never age out
  uint64_t max_connection_age_grace_seconds = 0;  // 0: calls in flight run to their end
  bool help = false;
};

// `args` excludes argv[0]. INVALID_ARGUMENT naming the flag and value that is wrong.
absl::StatusOr<ServerOptions> ParseServerOptions(const std::vector<std::string>& args);

// The --help text.
std::string ServerUsage();

}  // namespace calib

#endif  // CALIB_SERVER_SERVER_OPTIONS_H_
