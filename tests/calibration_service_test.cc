// calibd end to end: a real calibd process with small limits, called over a real
// channel. Covers GetServerInfo, health, Evaluate against a float64 reference,
// EvaluateStream against Evaluate, every row of api.md's status table that this server
// implements, the call log, flag errors, and a SIGTERM with streams in flight.
#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "calib/v1/calibration.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/server_test_util.h"

namespace calib {
namespace {

using ::calib::testing::CalibdProcess;
using ::testing::AnyOf;
using ::testing::ContainsRegex;
using ::testing::Eq;
using ::testing::HasSubstr;

constexpr uint64_t kMaxRows = 1000;
constexpr uint32_t kMaxClasses = 64;
// Not the defaults, so that GetServerInfo shows what was asked for.
constexpr uint64_t kMemoryBudgetBytes = uint64_t{3} << 30;
constexpr uint64_t kFitStoreBytes = uint64_t{96} << 20;
constexpr uint64_t kMaxConcurrentEvaluations = 64;
constexpr uint64_t kMaxMessageBytes = 65536;

template <typename T>
v1::Tensor MakeTensor(v1::DType dtype, const std::vector<T>& values) {
  v1::Tensor tensor;
  tensor.set_dtype(dtype);
  tensor.set_data(std::string(reinterpret_cast<const char*>(values.data()),
                              values.size() * sizeof(T)));
  return tensor;
}

v1::Batch MakeBatch(const std::vector<float>& logits,
                    const std::vector<int64_t>& labels) {
  v1::Batch batch;
  *batch.mutable_logits() = MakeTensor(v1::DTYPE_FLOAT32, logits);
  *batch.mutable_labels() = MakeTensor(v1::DTYPE_INT64, labels);
  return batch;
}

v1::EvaluationConfig Config(uint32_t num_classes) {
  v1::EvaluationConfig config;
  config.set_num_classes(num_classes);
  return config;
}

v1::EvaluateRequest Request(const v1::EvaluationConfig& config, const v1::Batch& batch) {
  v1::EvaluateRequest request;
  *request.mutable_config() = config;
  *request.mutable_batch() = batch;
  return request;
}

v1::EvaluateStreamRequest ConfigMessage(const v1::EvaluationConfig& config) {
  v1::EvaluateStreamRequest message;
  *message.mutable_config() = config;
  return message;
}

v1::EvaluateStreamRequest BatchMessage(const v1::Batch& batch) {
  v1::EvaluateStreamRequest message;
  *message.mutable_batch() = batch;
  return message;
}

// Random logits and labels of 5 classes, and a config that asks for most of the Report.
struct RandomData {
  static constexpr int kClasses = 5;
  RandomData(int num_rows, uint64_t seed) : rows(num_rows) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> logit(-3, 3);
    std::uniform_int_distribution<int64_t> label(0, kClasses - 1);
    logits.resize(rows * kClasses);
    labels.resize(rows);
    for (float& z : logits) z = logit(rng);
    for (int64_t& y : labels) y = label(rng);
  }
  v1::EvaluationConfig Config() const {
    v1::EvaluationConfig config;
    config.set_num_classes(kClasses);
    config.set_num_bins(10);
    config.add_top_k(1);
    config.add_top_k(3);
    config.set_classwise(true);
    config.set_fit_temperature(true);
    return config;
  }
  v1::Batch Rows(int first, int count) const {
    return MakeBatch(
        {logits.begin() + first * kClasses, logits.begin() + (first + count) * kClasses},
        {labels.begin() + first, labels.begin() + first + count});
  }
  int rows;
  std::vector<float> logits;
  std::vector<int64_t> labels;
};

int CountOf(const std::string& text, const std::string& part) {
  int count = 0;
  for (size_t at = text.find(part); at != std::string::npos;
       at = text.find(part, at + part.size())) {
    ++count;
  }
  return count;
}

std::chrono::system_clock::time_point Deadline() {
  return std::chrono::system_clock::now() + std::chrono::seconds(10);
}

// grpc.reflection.v1alpha list_services through a generic call, as raw bytes: the
// request is ServerReflectionRequest{list_services = ""} (field 7), and the response
// names every service. Returns the call's status; `response` gets its bytes.
grpc::Status ListServicesByReflection(const std::shared_ptr<grpc::Channel>& channel,
                                      std::string* response) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  grpc::CompletionQueue queue;
  auto call = stub.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &queue);
  const std::string request_bytes("\x3a\x00", 2);
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer reply;
  grpc::Status status;
  void* tag = nullptr;
  bool ok = false;
  // One operation at a time, each awaited before the next; a failed read is fine, the
  // status then says why.
  call->StartCall(&context);
  queue.Next(&tag, &ok);
  call->Write(request, &context);
  queue.Next(&tag, &ok);
  call->WritesDone(&context);
  queue.Next(&tag, &ok);
  call->Read(&reply, &context);
  queue.Next(&tag, &ok);
  if (ok) {
    std::vector<grpc::Slice> slices;
    if (reply.Dump(&slices).ok()) {
      for (const grpc::Slice& part : slices) {
        response->append(reinterpret_cast<const char*>(part.begin()), part.size());
      }
    }
  }
  call->Finish(&status, &context);
  queue.Next(&tag, &ok);
  queue.Shutdown();
  while (queue.Next(&tag, &ok)) {
  }
  return status;
}

class CalibrationServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = CalibdProcess::Start(
                  {"--threads", "2", "--max-rows", std::to_string(kMaxRows),
                   "--max-classes", std::to_string(kMaxClasses), "--max-message-bytes",
                   std::to_string(kMaxMessageBytes), "--memory-budget-bytes",
                   std::to_string(kMemoryBudgetBytes), "--fit-store-bytes",
                   std::to_string(kFitStoreBytes), "--max-concurrent-evaluations",
                   std::to_string(kMaxConcurrentEvaluations)})
                  .release();
  }
  static void TearDownTestSuite() {
    // A clean exit after every call above (a sanitizer build reports here too).
    if (server_ != nullptr) {
      server_->Signal(SIGTERM);
      EXPECT_EQ(server_->WaitForExit(std::chrono::seconds(15)), 0)
          << server_->ReadStderr();
    }
    delete server_;
    server_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(server_, nullptr) << "calibd did not start";
    channel_ =
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    stub_ = v1::CalibrationService::NewStub(channel_);
  }

  grpc::Status Evaluate(const v1::EvaluateRequest& request,
                        v1::EvaluateResponse* response = nullptr) {
    v1::EvaluateResponse ignored;
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    return stub_->Evaluate(&context, request, response ? response : &ignored);
  }

  grpc::Status EvaluateStream(const std::vector<v1::EvaluateStreamRequest>& messages,
                              v1::EvaluateStreamResponse* response = nullptr) {
    v1::EvaluateStreamResponse ignored;
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    auto writer = stub_->EvaluateStream(&context, response ? response : &ignored);
    for (const auto& message : messages) {
      if (!writer->Write(message)) break;  // the server ended the call early
    }
    writer->WritesDone();
    return writer->Finish();
  }

  grpc::health::v1::HealthCheckResponse::ServingStatus HealthStatus(
      const std::string& service) {
    auto health = grpc::health::v1::Health::NewStub(channel_);
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    const grpc::Status status = health->Check(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.status();
  }

  // Polls the call log for up to 5 s until `part` occurs `count` times.
  bool WaitForCount(const std::string& part, int count) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (CountOf(server_->ReadStderr(), part) < count) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  }

  void ExpectServerAnswers() {
    v1::GetServerInfoResponse info;
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    EXPECT_TRUE(stub_->GetServerInfo(&context, {}, &info).ok());
    v1::EvaluateResponse response;
    ASSERT_TRUE(
        Evaluate(Request(Config(2), MakeBatch({1, 0, 0, 1}, {0, 1})), &response).ok());
    EXPECT_EQ(response.report().metrics().num_samples(), 2u);
  }

  static CalibdProcess* server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::CalibrationService::Stub> stub_;
};

CalibdProcess* CalibrationServiceTest::server_ = nullptr;

TEST_F(CalibrationServiceTest, GetServerInfoReportsVersionAndLimits) {
  v1::GetServerInfoResponse info;
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  ASSERT_TRUE(stub_->GetServerInfo(&context, {}, &info).ok());
  EXPECT_EQ(info.version(), CALIB_VERSION);
  EXPECT_EQ(info.max_message_bytes(), kMaxMessageBytes);
  EXPECT_EQ(info.max_rows(), kMaxRows);
  EXPECT_EQ(info.max_classes(), kMaxClasses);
  EXPECT_EQ(info.memory_budget_bytes(), kMemoryBudgetBytes);
  EXPECT_EQ(info.fit_store_bytes(), kFitStoreBytes);
  EXPECT_EQ(info.max_concurrent_evaluations(), kMaxConcurrentEvaluations);
}

TEST_F(CalibrationServiceTest, HealthIsServingForServerAndService) {
  EXPECT_EQ(HealthStatus(""), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(HealthStatus("calib.v1.CalibrationService"),
            grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(CalibrationServiceTest, ReflectionListsTheService) {
  std::string response;
  const grpc::Status status = ListServicesByReflection(channel_, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(response, HasSubstr("calib.v1.CalibrationService"));
  EXPECT_THAT(response, HasSubstr("grpc.health.v1.Health"));
}

TEST_F(CalibrationServiceTest, EvaluateMatchesFloat64Reference) {
  constexpr int kRows = 4, kClasses = 3;
  const std::vector<float> logits = {2.0f,  0.5f, -1.0f, 0.1f, 0.2f, 0.3f,
                                     -0.5f, 1.5f, 0.25f, 1.0f, 1.0f, 3.0f};
  const std::vector<int64_t> labels = {0, 1, 1, 0};
  // metrics.md: nll = mean(lse - z_y), brier = mean sum_k (p_k - [k = y])^2,
  // accuracy = mean [argmax = y], mean_confidence = mean max_k p_k.
  double nll = 0, brier = 0, correct = 0, confidence = 0;
  for (int r = 0; r < kRows; ++r) {
    const float* z = &logits[r * kClasses];
    double max = z[0];
    int argmax = 0;
    for (int k = 1; k < kClasses; ++k) {
      if (z[k] > max) max = z[k], argmax = k;
    }
    double sum = 0;
    for (int k = 0; k < kClasses; ++k) sum += std::exp(double{z[k]} - max);
    const double lse = max + std::log(sum);
    nll += lse - z[labels[r]];
    for (int k = 0; k < kClasses; ++k) {
      const double p = std::exp(double{z[k]} - lse);
      brier += (p - (k == labels[r])) * (p - (k == labels[r]));
    }
    correct += argmax == labels[r];
    confidence += std::exp(max - lse);
  }

  const v1::EvaluateRequest request =
      Request(Config(kClasses), MakeBatch(logits, labels));
  v1::EvaluateResponse response;
  const grpc::Status status = Evaluate(request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const v1::Metrics& m = response.report().metrics();
  EXPECT_EQ(m.num_samples(), 4u);
  EXPECT_DOUBLE_EQ(m.accuracy(), correct / kRows);
  EXPECT_NEAR(m.nll(), nll / kRows, 1e-6 * nll / kRows);
  EXPECT_NEAR(m.brier(), brier / kRows, 1e-6 * brier / kRows);
  EXPECT_NEAR(m.mean_confidence(), confidence / kRows, 1e-6 * confidence / kRows);

  // The call log has the line of this call, with the bytes of its request.
  const std::string fields =
      absl::StrCat(" samples=4 bytes=", request.ByteSizeLong(), " status=OK seconds=");
  ASSERT_TRUE(server_->WaitForStderr(fields, std::chrono::seconds(5)));
  EXPECT_THAT(
      server_->ReadStderr(),
      ContainsRegex("calibd call method=Evaluate peer=ipv4:127\\.0\\.0\\.1:[0-9]+" +
                    fields + "[0-9]+\\.[0-9]{3}\n"));
}

TEST_F(CalibrationServiceTest, StreamOfBatchesGivesTheReportOfOneEvaluate) {
  const RandomData data(300, 7);
  const v1::EvaluationConfig config = data.Config();
  v1::EvaluateResponse whole;
  grpc::Status status = Evaluate(Request(config, data.Rows(0, data.rows)), &whole);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(whole.report().metrics().num_samples(), 300u);

  std::vector<v1::EvaluateStreamRequest> messages = {ConfigMessage(config)};
  int row = 0;
  for (int rows : {1, 49, 0, 100, 150}) {
    messages.push_back(BatchMessage(data.Rows(row, rows)));
    row += rows;
  }
  ASSERT_EQ(row, data.rows);
  v1::EvaluateStreamResponse streamed;
  status = EvaluateStream(messages, &streamed);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(streamed.report(),
                                                                 whole.report()))
      << streamed.report().DebugString() << "\nvs\n"
      << whole.report().DebugString();
}

TEST_F(CalibrationServiceTest, ConcurrentStreamsEachGetTheirOwnReport) {
  constexpr int kCalls = 8;
  std::vector<RandomData> data;
  std::vector<v1::EvaluateResponse> expected(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    data.emplace_back(120 + 10 * i, 100 + i);
    const grpc::Status status =
        Evaluate(Request(data[i].Config(), data[i].Rows(0, data[i].rows)), &expected[i]);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  std::vector<v1::EvaluateStreamResponse> streamed(kCalls);
  std::vector<grpc::Status> statuses(kCalls);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCalls; ++i) {
    threads.emplace_back([&, i] {
      std::vector<v1::EvaluateStreamRequest> messages = {ConfigMessage(data[i].Config())};
      for (int row = 0; row < data[i].rows; row += 16) {
        messages.push_back(
            BatchMessage(data[i].Rows(row, std::min(16, data[i].rows - row))));
      }
      statuses[i] = EvaluateStream(messages, &streamed[i]);
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kCalls; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(statuses[i].ok()) << statuses[i].error_message();
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(streamed[i].report(),
                                                                   expected[i].report()));
  }
}

TEST_F(CalibrationServiceTest, CancelledAndExpiredStreamsEndAlone) {
  const RandomData data(50, 3);
  const int cancelled_before = CountOf(server_->ReadStderr(), "status=CANCELLED");
  {
    grpc::ClientContext context;
    v1::EvaluateStreamResponse response;
    auto writer = stub_->EvaluateStream(&context, &response);
    ASSERT_TRUE(writer->Write(ConfigMessage(data.Config())));
    ASSERT_TRUE(writer->Write(BatchMessage(data.Rows(0, 50))));
    writer->WaitForInitialMetadata();
    context.TryCancel();
    EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(300));
    v1::EvaluateStreamResponse response;
    auto writer = stub_->EvaluateStream(&context, &response);
    ASSERT_TRUE(writer->Write(ConfigMessage(data.Config())));
    // No half-close: the server waits for more until the deadline passes.
    EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  // Both calls ended on the server too, logged as cancelled.
  EXPECT_TRUE(WaitForCount("status=CANCELLED", cancelled_before + 2));
  ExpectServerAnswers();
}

struct BadCall {
  std::string name;
  v1::EvaluateRequest request;
  grpc::StatusCode code;
  std::vector<std::string> message_has;
};

std::vector<BadCall> BadEvaluateCalls() {
  const v1::Batch good = MakeBatch({1, 2, 3, 3, 2, 1}, {2, 0});
  std::vector<BadCall> calls;
  {
    v1::EvaluateRequest request;
    *request.mutable_batch() = good;
    calls.push_back(
        {"missing config", request, grpc::StatusCode::INVALID_ARGUMENT, {"config"}});
  }
  calls.push_back({"num_classes 0",
                   Request(Config(0), good),
                   grpc::StatusCode::INVALID_ARGUMENT,
                   {"num_classes", " 0"}});
  {
    v1::EvaluationConfig config = Config(3);
    config.set_activation(static_cast<v1::Activation>(7));
    calls.push_back({"unknown activation",
                     Request(config, good),
                     grpc::StatusCode::INVALID_ARGUMENT,
                     {"activation", "7"}});
  }
  {
    v1::EvaluationConfig config = Config(3);
    config.set_num_bins(10001);
    calls.push_back({"num_bins 10001",
                     Request(config, good),
                     grpc::StatusCode::INVALID_ARGUMENT,
                     {"num_bins", "10001"}});
  }
  {
    v1::EvaluationConfig config = Config(3);
    config.add_top_k(0);
    calls.push_back({"top_k 0",
                     Request(config, good),
                     grpc::StatusCode::INVALID_ARGUMENT,
                     {"top_k", " 0"}});
  }
  {
    v1::EvaluationConfig config = Config(3);
    config.add_top_k(4);
    calls.push_back({"top_k over C",
                     Request(config, good),
                     grpc::StatusCode::INVALID_ARGUMENT,
                     {"top_k", "4"}});
  }
  {
    v1::Batch batch = good;
    *batch.mutable_logits() = MakeTensor<int32_t>(v1::DTYPE_INT32, {1, 2, 3, 3, 2, 1});
    calls.push_back({"integer logits",
                     Request(Config(3), batch),
                     grpc::StatusCode::INVALID_ARGUMENT,
                     {"logits.dtype", "int32"}});
  }
  {
    v1::Batch batch = good;
    *batch.mutable_labels() = MakeTensor<float>(v1::DTYPE_FLOAT32, {2, 0});
    calls.push_back({"float labels for SOFTMAX",
                     Request(Config(3), batch),
                     grpc::StatusCode::INVALID_ARGUMENT,
                     {"labels.dtype", "float32"}});
  }
  {
    v1::Batch batch = good;
    batch.mutable_logits()->mutable_data()->resize(13);
    calls.push_back({"logits not whole rows",
                     Request(Config(3), batch),
                     grpc::StatusCode::INVALID_ARGUMENT,
                     {"13 bytes"}});
  }
  calls.push_back({"label count mismatch",
                   Request(Config(3), MakeBatch({1, 2, 3, 3, 2, 1}, {2, 0, 1})),
                   grpc::StatusCode::INVALID_ARGUMENT,
                   {"labels", "24 bytes", "2 rows"}});
  calls.push_back({"NaN logit",
                   Request(Config(3), MakeBatch({1, 2, 3, 3, 2,
                                                 std::numeric_limits<float>::quiet_NaN()},
                                                {2, 0})),
                   grpc::StatusCode::INVALID_ARGUMENT,
                   {"row 1", "column 2"}});
  calls.push_back({"label out of range",
                   Request(Config(3), MakeBatch({1, 2, 3, 3, 2, 1}, {2, 5})),
                   grpc::StatusCode::INVALID_ARGUMENT,
                   {"row 1", "5"}});
  {
    v1::EvaluationConfig config = Config(1);
    config.set_activation(v1::ACTIVATION_SIGMOID);
    calls.push_back({"SIGMOID target 2",
                     Request(config, MakeBatch({0.5f, -0.5f}, {1, 2})),
                     grpc::StatusCode::INVALID_ARGUMENT,
                     {"row 1", "2"}});
  }
  {
    v1::EvaluationConfig config = Config(3);
    config.set_input_kind(v1::INPUT_KIND_PROBABILITIES);
    calls.push_back(
        {"PROBABILITIES not summing to 1",
         Request(config, MakeBatch({0.25f, 0.25f, 0.5f, 0.5f, 0.5f, 0.5f}, {2, 0})),
         grpc::StatusCode::INVALID_ARGUMENT,
         {"row 1", "1.5"}});
  }
  calls.push_back({"no samples",
                   Request(Config(3), v1::Batch()),
                   grpc::StatusCode::INVALID_ARGUMENT,
                   {"no samples"}});
  {
    v1::EvaluationConfig config = Config(3);
    config.set_ignore_index(-100);
    calls.push_back({"everything ignored",
                     Request(config, MakeBatch({1, 2, 3, 3, 2, 1}, {-100, -100})),
                     grpc::StatusCode::INVALID_ARGUMENT,
                     {"no samples", "ignore_index"}});
  }
  calls.push_back({"over --max-classes",
                   Request(Config(kMaxClasses + 1), good),
                   grpc::StatusCode::RESOURCE_EXHAUSTED,
                   {"num_classes", std::to_string(kMaxClasses + 1),
                    "limit of " + std::to_string(kMaxClasses), "--max-classes"}});
  calls.push_back({"over --max-rows",
                   Request(Config(2), MakeBatch(std::vector<float>(2 * (kMaxRows + 1)),
                                                std::vector<int64_t>(kMaxRows + 1))),
                   grpc::StatusCode::RESOURCE_EXHAUSTED,
                   {"limit of " + std::to_string(kMaxRows) + " rows", "--max-rows"}});
  calls.push_back(
      {"over --max-message-bytes",
       Request(Config(2), MakeBatch(std::vector<float>(kMaxMessageBytes / 4),
                                    std::vector<int64_t>(kMaxMessageBytes / 8))),
       grpc::StatusCode::RESOURCE_EXHAUSTED,
       {std::to_string(kMaxMessageBytes)}});
  return calls;
}

TEST_F(CalibrationServiceTest, EvaluateStatusTable) {
  for (const BadCall& call : BadEvaluateCalls()) {
    SCOPED_TRACE(call.name);
    const grpc::Status status = Evaluate(call.request);
    EXPECT_EQ(status.error_code(), call.code) << status.error_message();
    for (const std::string& text : call.message_has) {
      EXPECT_THAT(status.error_message(), HasSubstr(text));
    }
  }
  ExpectServerAnswers();
}

TEST_F(CalibrationServiceTest, StreamStatusTable) {
  const std::string log = server_->ReadStderr();
  const struct {
    int failed_precondition, resource_exhausted, cancelled;
  } log_before = {CountOf(log, "status=FAILED_PRECONDITION"),
                  CountOf(log, "status=RESOURCE_EXHAUSTED"),
                  CountOf(log, "status=CANCELLED")};
  const v1::Batch batch = MakeBatch({1, 2, 3, 3, 2, 1}, {2, 0});
  const v1::EvaluationConfig config = Config(3);

  grpc::Status status = EvaluateStream({BatchMessage(batch), ConfigMessage(config)});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("config"));

  status =
      EvaluateStream({ConfigMessage(config), BatchMessage(batch), ConfigMessage(config)});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("second config"));

  status = EvaluateStream({});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << status.error_message();

  status = EvaluateStream({ConfigMessage(config)});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("no samples"));

  // A bad batch after good ones names its row counted from the stream's first row.
  status = EvaluateStream({ConfigMessage(config), BatchMessage(batch),
                           BatchMessage(MakeBatch({1, 2, 3, 3, 2, 1}, {2, 7}))});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("row 3"));

  // --max-rows counts over the whole stream: 600 rows pass, 600 more do not.
  const v1::Batch rows600 =
      MakeBatch(std::vector<float>(2 * 600), std::vector<int64_t>(600));
  status = EvaluateStream(
      {ConfigMessage(Config(2)), BatchMessage(rows600), BatchMessage(rows600)});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("1200 rows"));
  EXPECT_THAT(status.error_message(), HasSubstr("--max-rows"));

  status = EvaluateStream({ConfigMessage(Config(kMaxClasses + 1))});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("--max-classes"));

  status = EvaluateStream(
      {ConfigMessage(Config(2)),
       BatchMessage(MakeBatch(std::vector<float>(kMaxMessageBytes / 4),
                              std::vector<int64_t>(kMaxMessageBytes / 8)))});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr(std::to_string(kMaxMessageBytes)));

  // Every call above has its line; the one over the size limit was failed by gRPC
  // itself, so the server only knows it as cancelled.
  EXPECT_TRUE(
      WaitForCount("status=FAILED_PRECONDITION", log_before.failed_precondition + 3));
  EXPECT_TRUE(
      WaitForCount("status=RESOURCE_EXHAUSTED", log_before.resource_exhausted + 2));
  EXPECT_TRUE(WaitForCount("status=CANCELLED", log_before.cancelled + 1));
  ExpectServerAnswers();
}

TEST(CalibdFlagsTest, BadFlagsExitWithStatus2AndOneLine) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"--bogus"},
                                             {"--tls-cert", "cert.pem"},
                                             {"--threads", "zero"},
                                             {"--threads", "0"},
                                             {"--max-rows", "-1"},
                                             {"--reflection=maybe"},
                                             {"stray"}}) {
    SCOPED_TRACE(args.front());
    std::string err;
    EXPECT_EQ(CalibdProcess::RunToExit(args, &err), 2);
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_THAT(err, HasSubstr("calibd: "));
  }
  std::string err;
  EXPECT_EQ(CalibdProcess::RunToExit({"--help"}, &err), 0);
}

TEST(CalibdShutdownTest, SigtermLetsStreamsInFlightFinishRefusesNewCallsExits0) {
  std::unique_ptr<CalibdProcess> server = CalibdProcess::Start(
      {"--threads", "1", "--grace-seconds", "10", "--reflection=false"});
  ASSERT_NE(server, nullptr);
  auto channel =
      grpc::CreateChannel(server->address(), grpc::InsecureChannelCredentials());
  std::string ignored;
  EXPECT_EQ(ListServicesByReflection(channel, &ignored).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);  // --reflection=false
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext watch_context;
  auto watch = health->Watch(&watch_context, grpc::health::v1::HealthCheckRequest());
  grpc::health::v1::HealthCheckResponse health_status;
  ASSERT_TRUE(watch->Read(&health_status));
  EXPECT_EQ(health_status.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  // Streams in flight: two on the channel that keeps its connection, two on channels of
  // their own; each has its config and a first batch taken by the server.
  constexpr int kStreams = 4;
  const RandomData data(40, 11);
  v1::EvaluateResponse expected;
  {
    auto stub = v1::CalibrationService::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    const grpc::Status status =
        stub->Evaluate(&context, Request(data.Config(), data.Rows(0, 40)), &expected);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  struct InFlight {
    std::unique_ptr<v1::CalibrationService::Stub> stub;
    grpc::ClientContext context;
    v1::EvaluateStreamResponse response;
    std::unique_ptr<grpc::ClientWriter<v1::EvaluateStreamRequest>> writer;
  };
  std::vector<std::unique_ptr<InFlight>> streams;
  for (int i = 0; i < kStreams; ++i) {
    auto call = std::make_unique<InFlight>();
    call->stub = v1::CalibrationService::NewStub(
        i < 2
            ? channel
            : grpc::CreateChannel(server->address(), grpc::InsecureChannelCredentials()));
    call->context.set_deadline(Deadline());
    call->writer = call->stub->EvaluateStream(&call->context, &call->response);
    ASSERT_TRUE(call->writer->Write(ConfigMessage(data.Config())));
    ASSERT_TRUE(call->writer->Write(BatchMessage(data.Rows(0, 10 * i))));
    call->writer->WaitForInitialMetadata();  // the server has taken the stream
    streams.push_back(std::move(call));
  }

  server->Signal(SIGTERM);
  ASSERT_TRUE(server->WaitForStderr("shutting down", std::chrono::seconds(5)));
  ASSERT_TRUE(watch->Read(&health_status));
  EXPECT_EQ(health_status.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  watch_context.TryCancel();
  watch->Finish();

  // New calls are refused while the streams go on, once Shutdown has begun (a moment
  // after NOT_SERVING): on a new channel, and on the channel whose streams go on.
  auto refused_on = [&](const std::shared_ptr<grpc::Channel>& on) {
    grpc::StatusCode code = grpc::StatusCode::OK;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (code == grpc::StatusCode::OK && std::chrono::steady_clock::now() < deadline) {
      auto late_stub = v1::CalibrationService::NewStub(
          on != nullptr ? on
                        : grpc::CreateChannel(server->address(),
                                              grpc::InsecureChannelCredentials()));
      grpc::ClientContext late_context;
      late_context.set_deadline(std::chrono::system_clock::now() +
                                std::chrono::seconds(1));
      v1::EvaluateResponse response;
      code =
          late_stub
              ->Evaluate(&late_context,
                         Request(Config(2), MakeBatch({1, 0, 0, 1}, {0, 1})), &response)
              .error_code();
    }
    return code;
  };
  // Refused is UNAVAILABLE (the connection or stream turned away), or CANCELLED when
  // gRPC had taken the call off the wire as Shutdown began and drops it unserved.
  const auto refused =
      AnyOf(Eq(grpc::StatusCode::UNAVAILABLE), Eq(grpc::StatusCode::CANCELLED));
  EXPECT_THAT(refused_on(nullptr), refused) << server->ReadStderr();
  EXPECT_THAT(refused_on(channel), refused) << server->ReadStderr();

  // Every stream in flight ends with the report of all its rows.
  for (int i = 0; i < kStreams; ++i) {
    SCOPED_TRACE(i);
    InFlight& call = *streams[i];
    ASSERT_TRUE(call.writer->Write(BatchMessage(data.Rows(10 * i, 40 - 10 * i))));
    call.writer->WritesDone();
    const grpc::Status status = call.writer->Finish();
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(call.response.report(),
                                                                   expected.report()));
  }
  EXPECT_EQ(server->WaitForExit(std::chrono::seconds(15)), 0);
}

}  // namespace
}  // namespace calib
