// client/remote against a real calibd over a real channel. What the client puts on the
// wire is read back from calibd's call log (messages, bytes, samples); reports must equal
// the in-process engine's, and the server's errors must reach the caller unchanged.
#include "client/remote.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "calib/v1/calibration.pb.h"
#include "client/input_files.h"
#include "src/evaluator.h"
#include "tests/array_test_util.h"
#include "tests/server_test_util.h"

namespace calib {
namespace {

using ::calib::testing::CalibdProcess;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using HealthStatus = grpc::health::v1::HealthCheckResponse;

constexpr uint32_t kClasses = 5;
// A row on the wire: 5 float32 logits and one int64 label.
constexpr uint64_t kRowBytes = kClasses * 4 + 8;

// `rows` rows of 5 float32 logits and int64 labels.
EvalInput MakeInput(uint64_t rows, int64_t bad_label_row = -1) {
  std::vector<float> logits(rows * kClasses);
  std::vector<int64_t> labels(rows);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (float& z : logits) z = normal(rng);
  for (uint64_t i = 0; i < rows; ++i) labels[i] = (i * 3) % kClasses;
  if (bad_label_row >= 0) labels[bad_label_row] = 7;
  EvalInput in;
  in.num_classes = kClasses;
  in.rows = rows;
  in.labels_per_row = 1;
  in.logits = MemoryArray(v1::DTYPE_FLOAT32, {rows, kClasses}, std::move(logits));
  in.labels = MemoryArray(v1::DTYPE_INT64, {rows}, std::move(labels));
  return in;
}

v1::EvaluationConfig Config() {
  v1::EvaluationConfig config;
  config.set_num_classes(kClasses);
  config.add_top_k(2);
  config.set_fit_temperature(true);
  return config;
}

v1::Report InProcess(const EvalInput& in) {
  auto evaluator = Evaluator::Create(Config());
  EXPECT_TRUE(evaluator.ok()) << evaluator.status();
  EXPECT_TRUE((*evaluator)
                  ->Add({in.logits.dtype, ArrayBytesOf(in.logits)},
                        {in.labels.dtype, ArrayBytesOf(in.labels)})
                  .ok());
  auto report = (*evaluator)->Finish();
  EXPECT_TRUE(report.ok()) << report.status();
  return *report;
}

// The serialized size of the stream message that carries `rows` rows, as calibd counts
// it in bytes=; only the sizes of the fields matter, not their values.
uint64_t BatchMessageBytes(uint64_t rows) {
  v1::EvaluateStreamRequest message;
  v1::Batch* batch = message.mutable_batch();
  batch->mutable_logits()->set_dtype(v1::DTYPE_FLOAT32);
  batch->mutable_logits()->set_data(std::string(rows * kClasses * 4, '\0'));
  batch->mutable_labels()->set_dtype(v1::DTYPE_INT64);
  batch->mutable_labels()->set_data(std::string(rows * 8, '\0'));
  return message.ByteSizeLong();
}

uint64_t ConfigMessageBytes() {
  v1::EvaluateStreamRequest message;
  *message.mutable_config() = Config();
  return message.ByteSizeLong();
}

class RemoteTest : public ::testing::Test {
 protected:
  // A calibd of its own for each test, so its log holds only that test's calls.
  void SetUp() override {
    server_ = CalibdProcess::Start({"--threads", "2"});
    ASSERT_NE(server_, nullptr) << "calibd did not start";
    address_ = server_->address();
  }

  // Waits for the line of the one EvaluateStream call with `fields` (from samples= to
  // status=) and checks its whole shape.
  void ExpectStreamLogged(const std::string& fields) {
    ASSERT_TRUE(server_->WaitForStderr(fields, std::chrono::seconds(10)))
        << "expected '" << fields << "' in\n"
        << server_->ReadStderr();
    EXPECT_THAT(server_->ReadStderr(),
                ContainsRegex("calibd call method=EvaluateStream "
                              "peer=ipv4:127\\.0\\.0\\.1:[0-9]+ " +
                              fields + " seconds=[0-9]+\\.[0-9]{3}\n"));
  }

  std::unique_ptr<CalibdProcess> server_;
  std::string address_;
};

TEST(RowsPerChunkTest, WholeRowsAndAtLeastOne) {
  const EvalInput in = MakeInput(10);
  EXPECT_EQ(RowsPerChunk(in, 1000), 35u);  // 1000 / 28
  EXPECT_EQ(RowsPerChunk(in, 28), 1u);
  EXPECT_EQ(RowsPerChunk(in, 27), 1u);
  EXPECT_EQ(RowsPerChunk(in, 1), 1u);
}

// calibd refuses a stream whose first message is not the config, so a report at all
// says the config went first.
TEST_F(RemoteTest, StreamsTheConfigThenWholeRowsWithinChunkBytes) {
  const EvalInput in = MakeInput(1000);
  auto report = EvaluateRemote(address_, Config(), in, 1000);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*report, InProcess(in)));

  // 1000 chunk bytes hold 35 rows of 28 bytes (980): 28 messages of 35 rows and one of
  // the last 20, after the config.
  static_assert(35 * kRowBytes <= 1000 && 36 * kRowBytes > 1000);
  const uint64_t bytes =
      ConfigMessageBytes() + 28 * BatchMessageBytes(35) + BatchMessageBytes(20);
  ExpectStreamLogged(
      absl::StrCat("samples=1000 bytes=", bytes, " messages=30 status=OK"));
}

TEST_F(RemoteTest, ARowLargerThanAChunkTravelsAlone) {
  const EvalInput in = MakeInput(4);
  static_assert(kRowBytes > 10);
  auto report = EvaluateRemote(address_, Config(), in, 10);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*report, InProcess(in)));
  const uint64_t bytes = ConfigMessageBytes() + 4 * BatchMessageBytes(1);
  ExpectStreamLogged(absl::StrCat("samples=4 bytes=", bytes, " messages=5 status=OK"));
}

TEST_F(RemoteTest, ServerErrorsKeepTheirCodeAndMessage) {
  // A label out of range in the fifth message: calibd names the row counted from the
  // stream's start, as the engine does for the whole array at once.
  const EvalInput in = MakeInput(100, /*bad_label_row=*/42);
  auto evaluator = Evaluator::Create(Config());
  ASSERT_TRUE(evaluator.ok());
  const absl::Status local = (*evaluator)
                                 ->Add({in.logits.dtype, ArrayBytesOf(in.logits)},
                                       {in.labels.dtype, ArrayBytesOf(in.labels)});
  ASSERT_EQ(local.code(), absl::StatusCode::kInvalidArgument);
  auto report = EvaluateRemote(address_, Config(), in, 10 * kRowBytes);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(report.status().message()),
              HasSubstr("EvaluateStream to " + address_ +
                        " failed: INVALID_ARGUMENT: " + std::string(local.message())));

  // A config the engine refuses, refused in the first message.
  v1::EvaluationConfig too_many_bins = Config();
  too_many_bins.set_num_bins(10001);
  const absl::Status local_config = Evaluator::Create(too_many_bins).status();
  ASSERT_EQ(local_config.code(), absl::StatusCode::kInvalidArgument);
  report = EvaluateRemote(address_, too_many_bins, MakeInput(10), 1000);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(report.status().message()),
              HasSubstr("EvaluateStream to " + address_ + " failed: INVALID_ARGUMENT: " +
                        std::string(local_config.message())));
  EXPECT_THAT(std::string(report.status().message()), HasSubstr("10001"));
}

TEST_F(RemoteTest, HealthReportsTheServingStatus) {
  for (const std::string service : {"", "calib.v1.CalibrationService"}) {
    SCOPED_TRACE(service);
    auto serving = CheckHealth(address_, service);
    ASSERT_TRUE(serving.ok()) << serving.status();
    EXPECT_EQ(*serving, HealthStatus::SERVING);
  }
  auto unknown = CheckHealth(address_, "no.such.Service");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(unknown.status().message()),
              HasSubstr("health check to " + address_ + " failed: NOT_FOUND: "));
}

// The rows are read from the files while the stream runs: a logits file cut short after
// it was opened cancels the call, and the error names the file.
TEST_F(RemoteTest, AFileCutShortCancelsTheStreamAndNamesTheFile) {
  const EvalInput rows = MakeInput(1000);
  const std::string base = ::testing::TempDir() + "/remote_test_cut";
  std::ofstream(base + "_logits.npy", std::ios::binary)
      << NpyBytes(1, Dict("<f4", "(1000, 5)"), ArrayBytesOf(rows.logits));
  std::ofstream(base + "_labels.npy", std::ios::binary)
      << NpyBytes(1, Dict("<i8", "(1000,)"), ArrayBytesOf(rows.labels));
  auto in = LoadEvalInput(base + "_logits.npy", base + "_labels.npy",
                          v1::ACTIVATION_UNSPECIFIED);
  ASSERT_TRUE(in.ok()) << in.status();
  std::filesystem::resize_file(base + "_logits.npy",
                               std::filesystem::file_size(base + "_logits.npy") / 2);
  auto report = EvaluateRemote(address_, Config(), *in, 10 * kRowBytes);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(report.status().message()), HasSubstr(base + "_logits.npy"));
  EXPECT_TRUE(server_->WaitForStderr("status=CANCELLED", std::chrono::seconds(10)))
      << server_->ReadStderr();
}

// A TCP port bound on loopback but not listening: connections to it are refused, and
// holding it keeps any other process from taking it meanwhile.
class ClosedPort {
 public:
  ClosedPort() : fd_(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
  }
  ~ClosedPort() {
    if (fd_ >= 0) close(fd_);
  }
  int port() const { return port_; }

 private:
  const int fd_;
  int port_ = 0;
};

TEST(RemoteUnreachableTest, AClosedPortIsUnavailable) {
  const ClosedPort closed;
  ASSERT_GT(closed.port(), 0);
  const std::string address = absl::StrCat("127.0.0.1:", closed.port());
  auto report = EvaluateRemote(address, Config(), MakeInput(3), 1000);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(report.status().message()),
              HasSubstr("GetServerInfo to " + address + " failed: UNAVAILABLE: "));
  auto health = CheckHealth(address, "");
  ASSERT_FALSE(health.ok());
  EXPECT_EQ(health.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(health.status().message()),
              HasSubstr("health check to " + address + " failed: UNAVAILABLE: "));
}

}  // namespace
}  // namespace calib
