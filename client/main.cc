// calib: the command-line client. `calib eval` evaluates logits and labels files in
// process or on a calibd server, prints tables or JSON and, with --plot, writes an SVG
// reliability diagram; `calib health` checks a server. Every failure is one line
// "calib: ..." on stderr and a non-zero exit: 2 for a usage error, 1 for anything else.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "client/command_line.h"
#include "client/input_files.h"
#include "client/reliability_svg.h"
#include "client/remote.h"
#include "client/report_json.h"
#include "client/report_table.h"
#include "client/row_chunks.h"
#include "src/evaluator.h"
#include "src/keep_freed_memory.h"
#include "src/options.h"
#include "src/status_macros.h"

namespace calib {
namespace {

constexpr int kFailure = 1;
constexpr int kUsage = 2;
// Logits and labels bytes read per chunk in process: on 100,000 x 1,000 float32, 8 MiB
// was measured faster than 1, 2, 4, 32 and 64 MiB.
constexpr uint64_t kInProcessChunkBytes = uint64_t{8} << 20;

int Fail(const absl::Status& status, int exit_code) {
  std::cerr << "calib: " << status.message() << std::endl;
  return exit_code;
}

std::string DefaultServer() {
  const char* server = std::getenv("CALIB_SERVER");
  return server == nullptr ? "" : server;
}

absl::StatusOr<v1::Report> EvaluateInProcess(const v1::EvaluationConfig& config,
                                             const EvalInput& input,
                                             uint64_t fit_store_bytes) {
  CALIB_ASSIGN_OR_RETURN(
      std::unique_ptr<Evaluator> evaluator,
      Evaluator::Create(config, StoreLimits{.fit_store_bytes = fit_store_bytes}));
  RowChunks chunks(input, kInProcessChunkBytes);
  std::string_view logits, labels;
  while (true) {
    CALIB_ASSIGN_OR_RETURN(const bool more, chunks.Next(&logits, &labels));
    if (!more) break;
    CALIB_RETURN_IF_ERROR(
        evaluator->Add({input.logits.dtype, logits}, {input.labels.dtype, labels}));
  }
  return evaluator->Finish();
}

absl::Status WriteOutput(const std::string& text, const std::string& path) {
  const bool to_stdout = path == "-";
  std::FILE* file = to_stdout ? stdout : std::fopen(path.c_str(), "wb");
  if (file == nullptr) {
    return absl::InvalidArgumentError("cannot write " + path + ": " +
                                      std::strerror(errno));
  }
  const bool written = std::fwrite(text.data(), 1, text.size(), file) == text.size();
  const bool flushed = (to_stdout ? std::fflush(file) : std::fclose(file)) == 0;
  if (!written || !flushed) {
    return absl::UnavailableError("cannot write " + (to_stdout ? "stdout" : path) + ": " +
                                  std::strerror(errno));
  }
  return absl::OkStatus();
}

absl::Status RunEval(const EvalCommand& command) {
  CALIB_ASSIGN_OR_RETURN(const EvalInput input,
                         LoadEvalInput(command.logits_path, command.labels_path,
                                       command.config.activation()));
  v1::EvaluationConfig config = command.config;
  config.set_num_classes(input.num_classes);
  config.set_expected_rows(input.rows);
  CALIB_ASSIGN_OR_RETURN(const ConnectionSecurity security,
                         LoadConnectionSecurity(command.security));
  // The messages' slices are freed as they are sent; kept, the next ones reuse them.
  if (!command.server.empty()) KeepFreedMemory();
  absl::StatusOr<v1::Report> report =
      command.server.empty()
          ? EvaluateInProcess(config, input, command.fit_store_bytes)
          : EvaluateRemote(command.server, config, input, command.chunk_bytes, security);
  if (!report.ok()) return report.status();
  if (command.plot_path) {
    // The evaluation accepted the config, so it resolves.
    CALIB_ASSIGN_OR_RETURN(const Options options, ResolveOptions(config));
    ReliabilityPlotOptions plot;
    plot.positive_class = options.sigmoid() && !options.top_label;
    plot.confidence_level = options.confidence_level;
    plot.source = command.logits_path.substr(command.logits_path.find_last_of('/') + 1);
    CALIB_RETURN_IF_ERROR(WriteOutput(ReliabilitySvg(*report, plot), *command.plot_path));
  }
  if (!command.json_path) return WriteOutput(FormatReportTable(*report), "-");
  CALIB_ASSIGN_OR_RETURN(const std::string json, ReportToJson(*report));
  return WriteOutput(json, *command.json_path);
}

int Main(const std::vector<std::string>& args) {
  if (args.empty()) {
    return Fail(absl::InvalidArgumentError("missing command; see calib --help"), kUsage);
  }
  const std::string& command = args.front();
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kMainHelp;
    return 0;
  }
  if (command == "eval") {
    absl::StatusOr<EvalCommand> eval = ParseEvalCommand(rest, DefaultServer());
    if (!eval.ok()) return Fail(eval.status(), kUsage);
    if (eval->help) {
      std::cout << kEvalHelp;
      return 0;
    }
    const absl::Status status = RunEval(*eval);
    return status.ok() ? 0 : Fail(status, kFailure);
  }
  if (command == "health") {
    absl::StatusOr<HealthCommand> health = ParseHealthCommand(rest, DefaultServer());
    if (!health.ok()) return Fail(health.status(), kUsage);
    if (health->help) {
      std::cout << kHealthHelp;
      return 0;
    }
    const absl::StatusOr<ConnectionSecurity> security =
        LoadConnectionSecurity(health->security);
    if (!security.ok()) return Fail(security.status(), kFailure);
    const auto serving = CheckHealth(health->server, health->service, *security);
    if (!serving.ok()) return Fail(serving.status(), kFailure);
    std::cout << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(*serving)
              << std::endl;
    return *serving == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : kFailure;
  }
  return Fail(absl::InvalidArgumentError("unknown command '" + command +
                                         "'; expected eval or health (see calib --help)"),
              kUsage);
}

}  // namespace
}  // namespace calib

int main(int argc, char** argv) {
  return calib::Main(std::vector<std::string>(argv + 1, argv + argc));
}
