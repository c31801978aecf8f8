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
      Flags::Parse(
          args,
          {"listen", "threads", "max-message-bytes", "max-rows", "max-classes",
           "grace-seconds", "tls-cert", "tls-key", "tls-client-ca", "auth-token-file",
           "keepalive-seconds", "keepalive-timeout-seconds", "max-connection-age-seconds",
           "max-connection-age-grace-seconds", "max-concurrent-evaluations",
           "memory-budget-bytes", "fit-store-bytes", "metrics-listen"},
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
  options.tls_cert = flags.GetOr("tls-cert", "");
  options.tls_key = flags.GetOr("tls-key", "");
  options.tls_client_ca = flags.GetOr("tls-client-ca", "");
  options.auth_token_file = flags.GetOr("auth-token-file", "");
  for (const char* flag : {"tls-cert", "tls-key", "tls-client-ca", "auth-token-file"}) {
    if (flags.Has(flag) && flags.GetOr(flag, "").empty()) {
      return absl::InvalidArgumentError(absl::StrCat("flag --", flag, " needs a path"));
    }
  }
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError(
        "flags --tls-cert and --tls-key go together: the certificate and its key");
  }
  if (!options.tls_client_ca.empty() && options.tls_cert.empty()) {
    return absl::InvalidArgumentError(
        "flag --tls-client-ca needs --tls-cert and --tls-key: mutual TLS is TLS first");
  }
  // Reflection is not token-checked, so a server that asks for a token keeps it off
  // unless told otherwise.
  CALIB_ASSIGN_OR_RETURN(options.reflection,
                         flags.GetBool("reflection", options.auth_token_file.empty()));
  struct Seconds {
    const char* flag;
    uint64_t* value;
    uint64_t min;
  };
  for (const Seconds& s :
       {Seconds{"keepalive-seconds", &options.keepalive_seconds, 1},
        Seconds{"keepalive-timeout-seconds", &options.keepalive_timeout_seconds, 1},
        Seconds{"max-connection-age-seconds", &options.max_connection_age_seconds, 0},
        Seconds{"max-connection-age-grace-seconds",
                &options.max_connection_age_grace_seconds, 0}}) {
    CALIB_ASSIGN_OR_RETURN(*s.value, flags.GetUint(s.flag, *s.value));
    // gRPC takes milliseconds as an int.
    if (*s.value < s.min || *s.value > INT_MAX / 1000) {
      return OutOfRange(s.flag, absl::StrCat(*s.value),
                        absl::StrCat("between ", s.min, " and ", INT_MAX / 1000));
    }
  }
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
         "              [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]\n"
         "              [--auth-token-file PATH] [--keepalive-seconds 30]\n"
         "              [--keepalive-timeout-seconds 10] [--max-connection-age-seconds "
         "300]\n"
         "              [--max-connection-age-grace-seconds 0]\n"
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
         "  --reflection         serve grpc.reflection (default true; false with\n"
         "                       --auth-token-file, since reflection is not "
         "token-checked)\n"
         "\n"
         "Security:\n"
         "  --tls-cert, --tls-key  serve TLS with this certificate chain and private "
         "key\n"
         "  --tls-client-ca        mutual TLS: require a client certificate this CA "
         "signed\n"
         "  --auth-token-file      every call but health checks must carry the metadata\n"
         "                         'authorization: Bearer <token>' with the file's "
         "token\n"
         "                         (trailing whitespace dropped); else UNAUTHENTICATED.\n"
         "                         Without TLS the token crosses the network in clear\n"
         "                         text: only on loopback or inside an encrypted mesh.\n"
         "\n"
         "Connections (defaults suit Kubernetes):\n"
         "  --keepalive-seconds    ping a connection idle this long, to find peers that\n"
         "                         vanished and keep NAT and conntrack entries alive;\n"
         "                         clients may ping as often as every 10 s (calib and\n"
         "                         calib_client ping every 30 s)\n"
         "  --keepalive-timeout-seconds  close a connection whose ping is unanswered\n"
         "  --max-connection-age-seconds  ask clients to reconnect after this long "
         "(+-10%),\n"
         "                         so that they re-resolve DNS and spread over new\n"
         "                         replicas; 0 for never\n"
         "  --max-connection-age-grace-seconds  then how long calls in flight on that\n"
         "                         connection may take before it closes; 0 for no "
         "limit\n";
}

}  // namespace calib
