#include "client/remote.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <gtest/gtest.h>

#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "calib/v1/calibration.grpc.pb.h"
#include "src/evaluator.h"

namespace calib {
namespace {

using ::testing::HasSubstr;
using HealthStatus = grpc::health::v1::HealthCheckResponse;

// A CalibrationService that records every message it receives and evaluates the rows
// with the engine, so the test sees exactly what the client put on the wire.
class RecordingService final : public v1::CalibrationService::Service {
 public:
  struct Seen {
    int configs = 0;
    std::vector<v1::Batch> batches;
  };

  grpc::Status EvaluateStream(grpc::ServerContext*,
                              grpc::ServerReader<v1::EvaluateStreamRequest>* reader,
                              v1::EvaluateStreamResponse* response) override {
    v1::EvaluateStreamRequest request;
    std::unique_ptr<Evaluator> evaluator;
    while (reader->Read(&request)) {
      std::lock_guard<std::mutex> lock(mu_);
      if (request.has_config()) {
        ++seen_.configs;
        auto created = Evaluator::Create(request.config());
        if (!created.ok()) return ToGrpc(created.status());
        evaluator = std::move(*created);
        continue;
      }
      seen_.batches.push_back(request.batch());
      if (evaluator == nullptr) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "no config");
      }
      if (absl::Status s = evaluator->Add(request.batch()); !s.ok()) return ToGrpc(s);
    }
    auto report = evaluator->Finish();
    if (!report.ok()) return ToGrpc(report.status());
    *response->mutable_report() = std::move(*report);
    return grpc::Status::OK;
  }

  Seen seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }

 private:
  static grpc::Status ToGrpc(const absl::Status& s) {
    return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                        std::string(s.message()));
  }

  std::mutex mu_;
  Seen seen_;
};

class RemoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    address_ = "127.0.0.1:" + std::to_string(port);
  }
  void TearDown() override { server_->Shutdown(); }

  RecordingService service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

// `rows` rows of 5 float32 logits and int64 labels: 28 bytes a row.
EvalInput MakeInput(uint64_t rows, int64_t bad_label_row = -1) {
  constexpr uint32_t kClasses = 5;
  auto logits = std::make_shared<std::vector<float>>(rows * kClasses);
  auto labels = std::make_shared<std::vector<int64_t>>(rows);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (float& z : *logits) z = normal(rng);
  for (uint64_t i = 0; i < rows; ++i) (*labels)[i] = (i * 3) % kClasses;
  if (bad_label_row >= 0) (*labels)[bad_label_row] = 7;
  EvalInput in;
  in.num_classes = kClasses;
  in.rows = rows;
  in.labels_per_row = 1;
  in.logits = {v1::DTYPE_FLOAT32,
               {rows, kClasses},
               std::string_view(reinterpret_cast<const char*>(logits->data()),
                                logits->size() * sizeof(float)),
               logits};
  in.labels = {v1::DTYPE_INT64,
               {rows},
               std::string_view(reinterpret_cast<const char*>(labels->data()),
                                labels->size() * sizeof(int64_t)),
               labels};
  return in;
}

v1::EvaluationConfig Config() {
  v1::EvaluationConfig config;
  config.set_num_classes(5);
  config.add_top_k(2);
  config.set_fit_temperature(true);
  return config;
}

v1::Report InProcess(const EvalInput& in) {
  auto evaluator = Evaluator::Create(Config());
  EXPECT_TRUE(evaluator.ok()) << evaluator.status();
  EXPECT_TRUE(
      (*evaluator)
          ->Add({in.logits.dtype, in.logits.data}, {in.labels.dtype, in.labels.data})
          .ok());
  auto report = (*evaluator)->Finish();
  EXPECT_TRUE(report.ok()) << report.status();
  return *report;
}

TEST(RowsPerChunkTest, WholeRowsAndAtLeastOne) {
  const EvalInput in = MakeInput(10);
  EXPECT_EQ(RowsPerChunk(in, 1000), 35u);  // 1000 / 28
  EXPECT_EQ(RowsPerChunk(in, 28), 1u);
  EXPECT_EQ(RowsPerChunk(in, 27), 1u);
  EXPECT_EQ(RowsPerChunk(in, 1), 1u);
}

TEST_F(RemoteTest, StreamsTheConfigThenWholeRowsWithinChunkBytes) {
  const EvalInput in = MakeInput(1000);
  auto report = EvaluateRemote(address_, Config(), in, 1000);
  ASSERT_TRUE(report.ok()) << report.status();

  const RecordingService::Seen seen = service_.seen();
  EXPECT_EQ(seen.configs, 1);
  ASSERT_EQ(seen.batches.size(), 29u);  // ceil(1000 / 35)
  std::string logits, labels;
  for (const v1::Batch& batch : seen.batches) {
    EXPECT_EQ(batch.logits().dtype(), v1::DTYPE_FLOAT32);
    EXPECT_EQ(batch.labels().dtype(), v1::DTYPE_INT64);
    const size_t rows = batch.labels().data().size() / 8;
    EXPECT_EQ(batch.logits().data().size(), rows * 20);
    EXPECT_LE(batch.logits().data().size() + batch.labels().data().size(), 1000u);
    EXPECT_GE(rows, 1u);
    logits += batch.logits().data();
    labels += batch.labels().data();
  }
  EXPECT_EQ(logits, std::string(in.logits.data));
  EXPECT_EQ(labels, std::string(in.labels.data));
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*report, InProcess(in)));
}

TEST_F(RemoteTest, ARowLargerThanAChunkTravelsAlone) {
  const EvalInput in = MakeInput(4);
  auto report = EvaluateRemote(address_, Config(), in, 10);
  ASSERT_TRUE(report.ok()) << report.status();
  const RecordingService::Seen seen = service_.seen();
  ASSERT_EQ(seen.batches.size(), 4u);
  for (const v1::Batch& batch : seen.batches) {
    EXPECT_EQ(batch.labels().data().size(), 8u);
  }
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*report, InProcess(in)));
}

TEST_F(RemoteTest, ServerErrorsKeepTheirCodeAndMessage) {
  const EvalInput in = MakeInput(100, /*bad_label_row=*/42);
  auto evaluator = Evaluator::Create(Config());
  ASSERT_TRUE(evaluator.ok());
  const absl::Status local =
      (*evaluator)
          ->Add({in.logits.dtype, in.logits.data}, {in.labels.dtype, in.labels.data});
  ASSERT_EQ(local.code(), absl::StatusCode::kInvalidArgument);

  auto report = EvaluateRemote(address_, Config(), in, 280);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(report.status().message()),
              HasSubstr("EvaluateStream to " + address_ +
                        " failed: INVALID_ARGUMENT: " + std::string(local.message())));
}

TEST_F(RemoteTest, HealthReportsTheServingStatus) {
  auto serving = CheckHealth(address_, "");
  ASSERT_TRUE(serving.ok()) << serving.status();
  EXPECT_EQ(*serving, HealthStatus::SERVING);
  server_->GetHealthCheckService()->SetServingStatus(false);
  serving = CheckHealth(address_, "");
  ASSERT_TRUE(serving.ok()) << serving.status();
  EXPECT_EQ(*serving, HealthStatus::NOT_SERVING);
  auto unknown = CheckHealth(address_, "no.such.Service");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(unknown.status().message()),
              HasSubstr("health check to " + address_ + " failed: NOT_FOUND: "));
}

TEST(RemoteUnreachableTest, NoServerIsUnavailable) {
  // Port 1 on loopback: nothing listens there, so the connection is refused at once.
  auto report = EvaluateRemote("127.0.0.1:1", Config(), MakeInput(3), 1000);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(report.status().message()),
              HasSubstr("EvaluateStream to 127.0.0.1:1 failed: UNAVAILABLE: "));
  auto health = CheckHealth("127.0.0.1:1", "");
  ASSERT_FALSE(health.ok());
  EXPECT_EQ(health.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace calib
