#include "client/command_line.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace calib {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::vector<std::string> kFiles = {"--logits", "z.npy", "--labels", "y.npy"};

std::vector<std::string> With(std::vector<std::string> more) {
  std::vector<std::string> args = kFiles;
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

TEST(CommandLineTest, DefaultsLeaveTheConfigAtItsZeroValues) {
  auto command = ParseEvalCommand(kFiles, "");
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_FALSE(command->help);
  EXPECT_EQ(command->logits_path, "z.npy");
  EXPECT_EQ(command->labels_path, "y.npy");
  EXPECT_EQ(command->server, "");
  EXPECT_FALSE(command->json_path.has_value());
  EXPECT_FALSE(command->plot_path.has_value());
  EXPECT_EQ(command->chunk_bytes, 4u << 20);
  EXPECT_EQ(command->fit_store_bytes, 256u << 20);
  const v1::EvaluationConfig& c = command->config;
  EXPECT_EQ(c.activation(), v1::ACTIVATION_UNSPECIFIED);
  EXPECT_EQ(c.input_kind(), v1::INPUT_KIND_UNSPECIFIED);
  EXPECT_EQ(c.num_bins(), 0u);
  EXPECT_FALSE(c.has_ignore_index());
  EXPECT_TRUE(c.top_k().empty());
  EXPECT_EQ(c.num_classes(), 0u);
}

TEST(CommandLineTest, EveryFlagReachesTheConfig) {
  auto command = ParseEvalCommand(With({"--server",
                                        "host:1",
                                        "--activation",
                                        "sigmoid",
                                        "--input=log-probabilities",
                                        "--bins",
                                        "20",
                                        "--ignore-index",
                                        "-100",
                                        "--top-k",
                                        "1,5",
                                        "--classwise",
                                        "--fit-temperature",
                                        "--bin-edges",
                                        "left-closed",
                                        "--binary-reliability",
                                        "top-label",
                                        "--json",
                                        "-",
                                        "--plot=diagram.svg",
                                        "--chunk-bytes=1000",
                                        "--bootstrap",
                                        "200",
                                        "--level",
                                        "0.9",
                                        "--seed",
                                        "42",
                                        "--smooth-ece=true"}),
                                  "env:2");
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_EQ(command->server, "host:1");
  EXPECT_EQ(command->json_path, "-");
  EXPECT_EQ(command->plot_path, "diagram.svg");
  EXPECT_EQ(command->chunk_bytes, 1000u);
  const v1::EvaluationConfig& c = command->config;
  EXPECT_EQ(c.activation(), v1::ACTIVATION_SIGMOID);
  EXPECT_EQ(c.input_kind(), v1::INPUT_KIND_LOG_PROBABILITIES);
  EXPECT_EQ(c.num_bins(), 20u);
  ASSERT_TRUE(c.has_ignore_index());
  EXPECT_EQ(c.ignore_index(), -100);
  EXPECT_THAT(c.top_k(), ElementsAre(1, 5));
  EXPECT_TRUE(c.classwise());
  EXPECT_TRUE(c.fit_temperature());
  EXPECT_EQ(c.bin_edges(), v1::BIN_EDGES_LEFT_CLOSED);
  EXPECT_EQ(c.binary_reliability(), v1::BINARY_RELIABILITY_TOP_LABEL);
  EXPECT_EQ(c.bootstrap_samples(), 200u);
  EXPECT_EQ(c.confidence_level(), 0.9);
  EXPECT_EQ(c.seed(), 42u);
  EXPECT_TRUE(c.smooth_ece());
}

TEST(CommandLineTest, ServerComesFromTheEnvironmentUnlessGiven) {
  auto command = ParseEvalCommand(kFiles, "env:2");
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_EQ(command->server, "env:2");
  auto health = ParseHealthCommand({}, "env:2");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->server, "env:2");
  EXPECT_EQ(health->service, "");
}

TEST(CommandLineTest, ExplicitBooleansAndZeroIgnoreIndex) {
  auto command = ParseEvalCommand(With({"--classwise=false", "--ignore-index=0"}), "");
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_FALSE(command->config.classwise());
  ASSERT_TRUE(command->config.has_ignore_index());
  EXPECT_EQ(command->config.ignore_index(), 0);
}

void ExpectUsageError(const std::vector<std::string>& args, const std::string& why) {
  auto command = ParseEvalCommand(args, "");
  ASSERT_FALSE(command.ok()) << why;
  EXPECT_EQ(command.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(command.status().message()), HasSubstr(why));
}

TEST(CommandLineTest, RejectsBadUsage) {
  ExpectUsageError({"--labels", "y.npy"}, "missing --logits FILE");
  ExpectUsageError({"--logits", "z.npy"}, "missing --labels FILE");
  ExpectUsageError(With({"--plots", "x.svg"}), "unknown flag --plots");
  ExpectUsageError(With({"--tls-cas", "ca.pem"}), "unknown flag --tls-cas");
  ExpectUsageError(With({"--activation", "relu"}),
                   "flag --activation: 'relu' is not one of sigmoid, softmax");
  ExpectUsageError(With({"--input", "logit"}), "flag --input: 'logit'");
  ExpectUsageError(With({"--bin-edges", "closed"}), "flag --bin-edges: 'closed'");
  ExpectUsageError(With({"--top-k", "1,,5"}), "flag --top-k: '1,,5'");
  ExpectUsageError(With({"--top-k", "-1"}), "flag --top-k: '-1'");
  ExpectUsageError(With({"--bins", "-3"}), "flag --bins: '-3'");
  ExpectUsageError(With({"--bins", "4294967296"}),
                   "flag --bins: 4294967296 is too large");
  ExpectUsageError(With({"--ignore-index", "x"}), "flag --ignore-index: 'x'");
  ExpectUsageError(With({"--chunk-bytes", "0"}), "--chunk-bytes: must be at least 1");
  ExpectUsageError(With({"--fit-store-bytes", "0"}),
                   "--fit-store-bytes: must be at least 1");
  ExpectUsageError(With({"--fit-store-bytes", "1000", "--server", "h:1"}),
                   "flag --fit-store-bytes is for in-process evaluation");
  ExpectUsageError(With({"--json", ""}), "flag --json needs a path");
  ExpectUsageError(With({"--plot", ""}), "flag --plot needs a file path");
  ExpectUsageError(With({"--plot", "-"}), "flag --plot needs a file path");
  ExpectUsageError(With({"extra"}), "unexpected argument 'extra'");
  ExpectUsageError(With({"--bins"}), "flag --bins needs a value");
}

TEST(CommandLineTest, HelpNeedsNothingElse) {
  auto eval = ParseEvalCommand({"--help"}, "");
  ASSERT_TRUE(eval.ok()) << eval.status();
  EXPECT_TRUE(eval->help);
  auto health = ParseHealthCommand({"--help"}, "");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_TRUE(health->help);
}

TEST(CommandLineTest, HealthNeedsAServer) {
  auto health = ParseHealthCommand({}, "");
  ASSERT_FALSE(health.ok());
  EXPECT_THAT(std::string(health.status().message()), HasSubstr("missing --server"));
  health = ParseHealthCommand({"--server=h:1", "--service", "calib.v1.X"}, "");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->server, "h:1");
  EXPECT_EQ(health->service, "calib.v1.X");
}

TEST(CommandLineTest, SecurityFlagsReachEvalAndHealth) {
  const std::vector<std::string> security = {"--tls-ca",
                                             "ca.pem",
                                             "--tls-cert",
                                             "c.pem",
                                             "--tls-key",
                                             "c.key",
                                             "--token-file=token.txt"};
  auto eval = ParseEvalCommand(With(security), "env:2");
  ASSERT_TRUE(eval.ok()) << eval.status();
  EXPECT_EQ(eval->security.tls_ca, "ca.pem");
  EXPECT_EQ(eval->security.tls_cert, "c.pem");
  EXPECT_EQ(eval->security.tls_key, "c.key");
  EXPECT_EQ(eval->security.token_file, "token.txt");
  std::vector<std::string> health_args = {"--server", "h:1"};
  health_args.insert(health_args.end(), security.begin(), security.end());
  auto health = ParseHealthCommand(health_args, "");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->security.tls_ca, "ca.pem");
  EXPECT_EQ(health->security.token_file, "token.txt");
  // None given: plaintext, no token.
  eval = ParseEvalCommand(kFiles, "env:2");
  ASSERT_TRUE(eval.ok()) << eval.status();
  EXPECT_EQ(eval->security.tls_ca, "");
  EXPECT_EQ(eval->security.token_file, "");
}

TEST(CommandLineTest, SecurityFlagsThatCannotWork) {
  ExpectUsageError(With({"--token-file", "t"}), "flag --token-file is for a server");
  ExpectUsageError(With({"--server", "h:1", "--tls-ca="}), "flag --tls-ca needs a path");
  ExpectUsageError(With({"--server", "h:1", "--tls-ca", "ca", "--tls-cert", "c"}),
                   "flags --tls-cert and --tls-key go together");
  ExpectUsageError(With({"--server", "h:1", "--tls-cert", "c", "--tls-key", "k"}),
                   "flag --tls-cert needs --tls-ca");
  auto health = ParseHealthCommand({"--server=h:1", "--tls-key", "k"}, "");
  ASSERT_FALSE(health.ok());
  EXPECT_THAT(std::string(health.status().message()),
              HasSubstr("--tls-cert and --tls-key go together"));
}

TEST(CommandLineTest, HelpTextsNameEveryFlag) {
  for (const char* flag : {"--logits",       "--labels",
                           "--server",       "--activation",
                           "--input",        "--bins",
                           "--ignore-index", "--top-k",
                           "--classwise",    "--fit-temperature",
                           "--bin-edges",    "--binary-reliability",
                           "--json",         "--plot",
                           "--chunk-bytes",  "--bootstrap",
                           "--level",        "--seed",
                           "--smooth-ece",   "--tls-ca",
                           "--tls-cert",     "--tls-key",
                           "--token-file",   "--fit-store-bytes"}) {
    EXPECT_THAT(std::string(kEvalHelp), HasSubstr(flag));
  }
  for (const char* flag :
       {"--server", "--service", "--tls-ca", "--tls-cert", "--tls-key", "--token-file"}) {
    EXPECT_THAT(std::string(kHealthHelp), HasSubstr(flag));
  }
  EXPECT_THAT(std::string(kMainHelp), HasSubstr("calib eval"));
  EXPECT_THAT(std::string(kMainHelp), HasSubstr("calib health"));
}

}  // namespace
}  // namespace calib
