// The command line of `calib`: its help texts, and the parsing of `calib eval` and
// `calib health` arguments into what main() runs. Parsing errors are INVALID_ARGUMENT
// naming the flag and its value; main() reports them as usage errors. Pure functions,
// thread-safe.
#ifndef CALIB_CLIENT_COMMAND_LINE_H_
#define CALIB_CLIENT_COMMAND_LINE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "calib/v1/calibration.pb.h"
#include "client/remote.h"

namespace calib {

extern const std::string_view kMainHelp;
extern const std::string_view kEvalHelp;
extern const std::string_view kHealthHelp;

struct EvalCommand {
  bool help = false;
  std::string logits_path;
  std::string labels_path;
  std::string server;                    // empty: evaluate in-process
  v1::EvaluationConfig config;           // all but num_classes, which the logits give
  std::optional<std::string> json_path;  // "-" for stdout; absent: print the table
  std::optional<std::string> plot_path;  // the reliability diagram's SVG file
  uint64_t chunk_bytes = 0;
  uint64_t fit_store_bytes = 0;  // in-process only
  SecurityFiles security;
};

struct HealthCommand {
  bool help = false;
  std::string server;
  std::string service;  // "" asks about the server as a whole
  SecurityFiles security;
};

// `args` are the arguments after the command name. `default_server` is $CALIB_SERVER
// (empty when unset), used when --server is not given.
absl::StatusOr<EvalCommand> ParseEvalCommand(const std::vector<std::string>& args,
                                             const std::string& default_server);
absl::StatusOr<HealthCommand> ParseHealthCommand(const std::vector<std::string>& args,
                                                 const std::string& default_server);

}  // namespace calib

#endif  // CALIB_CLIENT_COMMAND_LINE_H_
