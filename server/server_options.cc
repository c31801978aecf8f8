#include "server/server_options.h"

#include <climits>
#include <thread>

#include "absl/strings/str_cat.h"
#include "src/flags.h"
#include "src/status_macros.h"

namespace calib {
namespace {

absl::Status OutOfRange(const std::string& flag, const std::string& value,
                        const std::string& range) {
  return absl::InvalidArgumentError(
      absl::StrCat("flag --", flag, ": ", value, " is not ", range));
}

}  // namespace

absl::StatusOr<ServerOptions> ParseServerOptions(const std::vector<std::string>& args) {
  CALIB_ASSIGN_OR_RETURN(
      Flags flags,
      Flags::Parse(args,
                   {"listen", "threads", "max-message-bytes", "max-rows", "max-classes",
                    "grace-seconds", "max-concurrent-evaluations", "memory-budget-bytes",
                    "fit-store-bytes", "metrics-listen"},
                   {"reflection", "help"}));
  if (!flags.positionals().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument '", flags.positionals().front(), "'"));
  }
  ServerOptions options;
  CALIB_ASSIGN_OR_RETURN(options.help, flags.GetBool("help", false));
  options.listen = flags.GetOr("listen", options.listen);
  if (options.listen.empty()) return OutOfRange("listen", "''", "an address HOST:PORT");

  const int hardware = static_cast<int>(std::thread::hardware_concurrency());
  CALIB_ASSIGN_OR_RETURN(const int64_t threads,
                         flags.GetInt("threads", hardware > 0 ? hardware : 1));
  if (threads < 1 || threads > 4096) {
    return OutOfRange("threads", absl::StrCat(threads), "between 1 and 4096");
  }
  options.threads = static_cast<int>(threads);

  CALIB_ASSIGN_OR_RETURN(options.max_message_bytes,
                         flags.GetUint("max-message-bytes", options.max_message_bytes));
  // gRPC takes the limit as an int.
  if (options.max_message_bytes < 1 || options.max_message_bytes > INT_MAX) {
    return OutOfRange("max-message-bytes", absl::StrCat(options.max_message_bytes),
                      absl::StrCat("between 1 and ", INT_MAX));
  }
  CALIB_ASSIGN_OR_RETURN(options.max_rows, flags.GetUint("max-rows", 0));
  CALIB_ASSIGN_OR_RETURN(const uint64_t max_classes, flags.GetUint("max-classes", 0));
  if (max_classes > UINT32_MAX) {
    return OutOfRange("max-classes", absl::StrCat(max_classes),
                      absl::StrCat("at most ", UINT32_MAX));
  }
  options.max_classes = static_cast<uint32_t>(max_classes);
  CALIB_ASSIGN_OR_RETURN(options.max_concurrent_evaluations,
                         flags.GetUint("max-concurrent-evaluations", 0));
  CALIB_ASSIGN_OR_RETURN(
      options.memory_budget_bytes,
      flags.GetUint("memory-budget-bytes", options.memory_budget_bytes));
  CALIB_ASSIGN_OR_RETURN(options.fit_store_bytes,
                         flags.GetUint("fit-store-bytes", options.fit_store_bytes));
  if (options.fit_store_bytes < 1) {
    return OutOfRange("fit-store-bytes", "0", "at least 1");
  }
  options.metrics_listen = flags.GetOr("metrics-listen", "");
  CALIB_ASSIGN_OR_RETURN(options.reflection, flags.GetBool("reflection", true));
  CALIB_ASSIGN_OR_RETURN(options.grace_seconds,
                         flags.GetDouble("grace-seconds", options.grace_seconds));
  if (!(options.grace_seconds >= 0 && options.grace_seconds <= 86400)) {
    return OutOfRange("grace-seconds", flags.GetOr("grace-seconds", ""),
                      "between 0 and 86400");
  }
  return options;
}

std::string ServerUsage() {
  return "usage: calibd [--listen 0.0.0.0:50051] [--threads N]\n"
         "              [--max-message-bytes 67108864] [--max-rows N] [--max-classes N]\n"
         "              [--max-concurrent-evaluations N] [--memory-budget-bytes N]\n"
         "              [--fit-store-bytes N] [--metrics-listen HOST:PORT]\n"
         "              [--grace-seconds 20] [--reflection=true]\n"
         "\n"
         "Serves calib.v1.CalibrationService, grpc.health.v1 and server reflection.\n"
         "  --listen             address to listen on; port 0 picks a free port\n"
         "  --threads            threads that evaluate (default: hardware concurrency)\n"
         "  --max-message-bytes  largest message received or sent\n"
         "  --max-rows           most rows per evaluation, 0 for no limit\n"
         "  --max-classes        largest num_classes, 0 for no limit\n"
         "  --max-concurrent-evaluations  evaluations at once, 0 for no limit\n"
         "  --memory-budget-bytes  bytes all evaluations may hold at once (default\n"
         "                       1073741824), 0 for no limit\n"
         "  --fit-store-bytes    logit rows kept per evaluation for the temperature and\n"
         "                       Platt fits (default 268435456); beyond, a uniform "
         "sample\n"
         "  --metrics-listen     address of Prometheus /metrics, e.g. 0.0.0.0:9090;\n"
         "                       port 0 picks a free port (default: not served)\n"
         "  --grace-seconds      on SIGTERM, how long calls in flight may take to end\n"
         "  --reflection         serve grpc.reflection (default true)\n";
}

}  // namespace calib
