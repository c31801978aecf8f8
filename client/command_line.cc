#include "client/command_line.h"

#include <limits>
#include <map>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/remote.h"
#include "src/fit_store.h"
#include "src/flags.h"
#include "src/status_macros.h"

namespace calib {

const std::string_view kMainHelp =
    R"(calib: how well a classifier's confidence matches its accuracy (ECE, reliability
bins, NLL, Brier, temperature scaling), from its logits and the true labels.

Usage:
  calib eval --logits FILE --labels FILE [options]   evaluate, in-process or on calibd
  calib health --server HOST:PORT [security]         ask a calibd server if it serves
  calib --help | calib eval --help | calib health --help

Exit status: 0 on success, 1 on a failure, 2 on a usage error.
)";

const std::string_view kEvalHelp =
    R"(Usage: calib eval --logits FILE --labels FILE [options]

FILE is a .npy array or a .csv of numbers (comma-separated, one row per line, an
optional header line; no index column). Logits are [N, C], [N] (binary, C = 1) or
[B, S, C] (sequences); num_classes is the last axis. Labels are class indices [N] or
[B, S] (softmax), 0/1 targets [N] (binary) or [N, C] (multi-label sigmoid).
.npy dtypes: logits float32, float64, float16, bfloat16 (saved by np.save as '<V2');
labels int32, int64, uint8, bool (sigmoid targets may also be float).

Input:
  --logits FILE              the model's outputs (required)
  --labels FILE              the true labels (required)
  --activation A             softmax | sigmoid (default: softmax when C > 1, else sigmoid)
  --input KIND               logits | probabilities | log-probabilities (default logits)
  --ignore-index I           skip labels equal to I, e.g. -100

Metrics:
  --bins N                   equal-width reliability bins (default 15, at most 10000)
  --bin-edges E              right-closed: (a, b], as scikit-learn (default) |
                             left-closed: [a, b), as TensorFlow Probability
  --binary-reliability R     binary sigmoid bins: positive-class (default) | top-label
  --top-k K[,K...]           top-k accuracies, e.g. 1,5 (softmax only)
  --classwise                also compute the classwise ECE
  --fit-temperature          fit temperature scaling (and Platt scaling for sigmoid)
  --smooth-ece               also compute the smooth ECE
  --bootstrap B              bootstrap replicates for intervals (default 0: none)
  --level L                  confidence level of the intervals (default 0.95)
  --seed S                   seed of the bootstrap (default 0)

Where and how:
  --server HOST:PORT         evaluate on a calibd server (default: $CALIB_SERVER if set,
                             else in-process); both give identical reports
  --chunk-bytes N            logits+labels bytes per streamed message (default 4194304)
  --fit-store-bytes N        in-process: logit bytes kept for the fits (default
                             268435456, as calibd's); beyond, a uniform sample of rows
  --json PATH|-              write the report as JSON to PATH, or to stdout with -,
                             instead of printing the tables
  --plot PATH.svg            also write a reliability diagram (SVG): accuracy per bin
                             against the diagonal, before and after the fits

Security (with --server):
  --tls-ca PEM               connect with TLS, trusting the CAs in PEM to sign the
                             server's certificate (without it: plaintext)
  --tls-cert PEM --tls-key PEM
                             mutual TLS: this client certificate and its key (need
                             --tls-ca)
  --token-file PATH          send the token in PATH (trailing whitespace dropped) as
                             `authorization: Bearer <token>`; over plaintext it
                             crosses the network in clear text

Flags take --flag value or --flag=value.
Exit status: 0 on success, 1 on a failure, 2 on a usage error.
)";

const std::string_view kHealthHelp =
    R"(Usage: calib health --server HOST:PORT [--service NAME] [--tls-ca PEM]
                    [--tls-cert PEM --tls-key PEM] [--token-file PATH]

Asks the server's grpc.health.v1 service whether it serves (--service: one service,
e.g. calib.v1.CalibrationService; default: the server as a whole) and prints the
answer: SERVING or NOT_SERVING. --server defaults to $CALIB_SERVER. The security
flags are those of calib eval; calibd answers health checks without a token.
Exit status: 0 only when SERVING; 1 otherwise or on a failure, 2 on a usage error.
)";

namespace {

template <typename Enum>
absl::StatusOr<Enum> ParseEnum(const Flags& flags, const std::string& name,
                               const std::map<std::string, Enum>& values) {
  const std::optional<std::string> value = flags.Get(name);
  if (!value) return Enum{};
  auto it = values.find(*value);
  if (it != values.end()) return it->second;
  std::vector<std::string> names;
  for (const auto& [spelling, unused] : values) names.push_back(spelling);
  return absl::InvalidArgumentError(absl::StrCat(
      "flag --", name, ": '", *value, "' is not one of ", absl::StrJoin(names, ", ")));
}

absl::StatusOr<uint32_t> GetUint32(const Flags& flags, const std::string& name) {
  CALIB_ASSIGN_OR_RETURN(const uint64_t value, flags.GetUint(name, 0));
  if (value > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("flag --", name, ": ", value, " is too large"));
  }
  return static_cast<uint32_t>(value);
}

absl::Status ParseTopK(const std::string& text, v1::EvaluationConfig* config) {
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    uint32_t k;
    part = absl::StripAsciiWhitespace(part);
    if (part.empty() || part[0] == '-' || !absl::SimpleAtoi(part, &k)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "flag --top-k: '", text, "' is not a comma-separated list of integers"));
    }
    config->add_top_k(k);
  }
  return absl::OkStatus();
}

// --tls-ca, --tls-cert, --tls-key and --token-file of eval and health.
absl::StatusOr<SecurityFiles> ParseSecurity(const Flags& flags, bool remote) {
  SecurityFiles files;
  files.tls_ca = flags.GetOr("tls-ca", "");
  files.tls_cert = flags.GetOr("tls-cert", "");
  files.tls_key = flags.GetOr("tls-key", "");
  files.token_file = flags.GetOr("token-file", "");
  for (const char* flag : {"tls-ca", "tls-cert", "tls-key", "token-file"}) {
    if (!flags.Has(flag)) continue;
    if (flags.GetOr(flag, "").empty()) {
      return absl::InvalidArgumentError(absl::StrCat("flag --", flag, " needs a path"));
    }
    if (!remote) {
      return absl::InvalidArgumentError(absl::StrCat(
          "flag --", flag, " is for a server: give --server HOST:PORT as well"));
    }
  }
  if (files.tls_cert.empty() != files.tls_key.empty()) {
    return absl::InvalidArgumentError(
        "flags --tls-cert and --tls-key go together: the client certificate and its key");
  }
  if (!files.tls_cert.empty() && files.tls_ca.empty()) {
    return absl::InvalidArgumentError(
        "flag --tls-cert needs --tls-ca: the CAs that sign the server's certificate");
  }
  return files;
}

absl::Status Unexpected(const Flags& flags) {
  if (flags.positionals().empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("unexpected argument '", flags.positionals().front(), "'"));
}

}  // namespace

absl::StatusOr<EvalCommand> ParseEvalCommand(const std::vector<std::string>& args,
                                             const std::string& default_server) {
  CALIB_ASSIGN_OR_RETURN(
      const Flags flags,
      Flags::Parse(args, {"logits",         "labels",
                          "server",         "activation",
                          "input",          "bins",
                          "ignore-index",   "top-k",
                          "bin-edges",      "binary-reliability",
                          "json",           "plot",
                          "chunk-bytes",    "bootstrap",
                          "level",          "seed",
                          "tls-ca",         "tls-cert",
                          "tls-key",        "token-file",
                          "fit-store-bytes"},
                   {"classwise", "fit-temperature", "smooth-ece", "help"}));
  EvalCommand command;
  CALIB_ASSIGN_OR_RETURN(command.help, flags.GetBool("help", false));
  if (command.help) return command;
  CALIB_RETURN_IF_ERROR(Unexpected(flags));
  for (const char* required : {"logits", "labels"}) {
    if (flags.GetOr(required, "").empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("missing --", required, " FILE (see calib eval --help)"));
    }
  }
  command.logits_path = *flags.Get("logits");
  command.labels_path = *flags.Get("labels");
  command.server = flags.GetOr("server", default_server);
  CALIB_ASSIGN_OR_RETURN(command.security, ParseSecurity(flags, !command.server.empty()));

  v1::EvaluationConfig& config = command.config;
  CALIB_ASSIGN_OR_RETURN(
      const v1::Activation activation,
      ParseEnum<v1::Activation>(
          flags, "activation",
          {{"softmax", v1::ACTIVATION_SOFTMAX}, {"sigmoid", v1::ACTIVATION_SIGMOID}}));
  config.set_activation(activation);
  CALIB_ASSIGN_OR_RETURN(const v1::InputKind input_kind,
                         ParseEnum<v1::InputKind>(
                             flags, "input",
                             {{"logits", v1::INPUT_KIND_LOGITS},
                              {"probabilities", v1::INPUT_KIND_PROBABILITIES},
                              {"log-probabilities", v1::INPUT_KIND_LOG_PROBABILITIES}}));
  config.set_input_kind(input_kind);
  CALIB_ASSIGN_OR_RETURN(
      const v1::BinEdges bin_edges,
      ParseEnum<v1::BinEdges>(flags, "bin-edges",
                              {{"right-closed", v1::BIN_EDGES_RIGHT_CLOSED},
                               {"left-closed", v1::BIN_EDGES_LEFT_CLOSED}}));
  config.set_bin_edges(bin_edges);
  CALIB_ASSIGN_OR_RETURN(const v1::BinaryReliability binary_reliability,
                         ParseEnum<v1::BinaryReliability>(
                             flags, "binary-reliability",
                             {{"positive-class", v1::BINARY_RELIABILITY_POSITIVE_CLASS},
                              {"top-label", v1::BINARY_RELIABILITY_TOP_LABEL}}));
  config.set_binary_reliability(binary_reliability);

  CALIB_ASSIGN_OR_RETURN(const uint32_t bins, GetUint32(flags, "bins"));
  config.set_num_bins(bins);
  if (flags.Has("ignore-index")) {
    CALIB_ASSIGN_OR_RETURN(const int64_t ignore_index, flags.GetInt("ignore-index", 0));
    config.set_ignore_index(ignore_index);
  }
  if (const std::optional<std::string> top_k = flags.Get("top-k")) {
    CALIB_RETURN_IF_ERROR(ParseTopK(*top_k, &config));
  }
  CALIB_ASSIGN_OR_RETURN(const bool classwise, flags.GetBool("classwise", false));
  config.set_classwise(classwise);
  CALIB_ASSIGN_OR_RETURN(const bool fit, flags.GetBool("fit-temperature", false));
  config.set_fit_temperature(fit);
  CALIB_ASSIGN_OR_RETURN(const bool smooth_ece, flags.GetBool("smooth-ece", false));
  config.set_smooth_ece(smooth_ece);
  CALIB_ASSIGN_OR_RETURN(const uint32_t bootstrap, GetUint32(flags, "bootstrap"));
  config.set_bootstrap_samples(bootstrap);
  CALIB_ASSIGN_OR_RETURN(const double level, flags.GetDouble("level", 0));
  config.set_confidence_level(level);
  CALIB_ASSIGN_OR_RETURN(const uint64_t seed, flags.GetUint("seed", 0));
  config.set_seed(seed);

  if (const std::optional<std::string> json = flags.Get("json")) {
    if (json->empty()) {
      return absl::InvalidArgumentError("flag --json needs a path, or - for stdout");
    }
    command.json_path = *json;
  }
  if (const std::optional<std::string> plot = flags.Get("plot")) {
    // Not "-": stdout carries the table or the JSON.
    if (plot->empty() || *plot == "-") {
      return absl::InvalidArgumentError("flag --plot needs a file path, e.g. plot.svg");
    }
    command.plot_path = *plot;
  }
  CALIB_ASSIGN_OR_RETURN(command.chunk_bytes,
                         flags.GetUint("chunk-bytes", kDefaultChunkBytes));
  if (command.chunk_bytes == 0) {
    return absl::InvalidArgumentError("flag --chunk-bytes: must be at least 1");
  }
  if (flags.Has("fit-store-bytes") && !command.server.empty()) {
    return absl::InvalidArgumentError(
        "flag --fit-store-bytes is for in-process evaluation: calibd's own "
        "--fit-store-bytes sets it on the server");
  }
  CALIB_ASSIGN_OR_RETURN(command.fit_store_bytes,
                         flags.GetUint("fit-store-bytes", kDefaultFitStoreBytes));
  if (command.fit_store_bytes == 0) {
    return absl::InvalidArgumentError("flag --fit-store-bytes: must be at least 1");
  }
  return command;
}

absl::StatusOr<HealthCommand> ParseHealthCommand(const std::vector<std::string>& args,
                                                 const std::string& default_server) {
  CALIB_ASSIGN_OR_RETURN(
      const Flags flags,
      Flags::Parse(args,
                   {"server", "service", "tls-ca", "tls-cert", "tls-key", "token-file"},
                   {"help"}));
  HealthCommand command;
  CALIB_ASSIGN_OR_RETURN(command.help, flags.GetBool("help", false));
  if (command.help) return command;
  CALIB_RETURN_IF_ERROR(Unexpected(flags));
  command.server = flags.GetOr("server", default_server);
  if (command.server.empty()) {
    return absl::InvalidArgumentError("missing --server HOST:PORT");
  }
  command.service = flags.GetOr("service", "");
  CALIB_ASSIGN_OR_RETURN(command.security, ParseSecurity(flags, /*remote=*/true));
  return command;
}

}  // namespace calib
