// libFuzzer target over what calibd does with the messages of a call once gRPC has
// received them: parse the bytes as calib.v1 requests, validate the config against the
// server's limits (LimitedEvaluator::Create), Add every batch, Finish. Any input must end
// in OK or in a status of api.md's table, never a crash, a sanitizer report or a hang.
// Input: byte 0 chooses the method (even: Evaluate, odd: EvaluateStream); the rest is
// one EvaluateRequest, or EvaluateStreamRequests in protobuf's length-delimited form.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "calib/v1/calibration.pb.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/delimited_message_util.h"
#include "oneapi/tbb/task_arena.h"
#include "server/limited_evaluator.h"
#include "src/tensor.h"

namespace calib {
namespace {

// Small enough that no input spends seconds or gigabytes (the memory budget of a
// deployment is a flag of its own), large enough for every code path of the engine.
constexpr EvaluationLimits kLimits{.max_rows = 4096, .max_classes = 64};

[[noreturn]] void Fail(const char* what, const absl::Status& status) {
  std::fprintf(stderr, "%s: %s\n", what, status.ToString().c_str());
  std::abort();
}

// The codes api.md lets a bad request end with; anything else is a bug of ours.
void CheckCode(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kResourceExhausted:
      if (!status.ok() && status.message().empty())
        Fail("error without a message", status);
      return;
    default:
      Fail("a code outside the status table", status);
  }
}

void CheckReport(const absl::StatusOr<v1::Report>& report) {
  CheckCode(report.status());
  if (report.ok() && report->metrics().num_samples() == 0) {
    Fail("a report of no samples", absl::OkStatus());
  }
}

std::string Serialized(const v1::Report& report) {
  std::string bytes;
  google::protobuf::io::StringOutputStream out(&bytes);
  google::protobuf::io::CodedOutputStream coded(&out);
  coded.SetSerializationDeterministic(true);
  report.SerializeToCodedStream(&coded);
  coded.Trim();
  return bytes;
}

// EvaluateReactor::Run: the config is required, the batch may be empty.
void Evaluate(const v1::EvaluateRequest& request) {
  if (!request.has_config()) return;
  absl::StatusOr<std::unique_ptr<LimitedEvaluator>> evaluator =
      LimitedEvaluator::Create(request.config(), kLimits);
  CheckCode(evaluator.status());
  if (!evaluator.ok()) return;
  const absl::Status added = (*evaluator)->Add(request.batch());
  CheckCode(added);
  if (added.ok()) CheckReport((*evaluator)->Finish());
}

// The batches of a stream joined into one, when they can be: every batch with rows has
// the same dtypes. The engine promises the same Report however the rows were split.
std::optional<v1::Batch> Joined(const std::vector<v1::Batch>& batches) {
  v1::Batch joined;
  bool first = true;
  for (const v1::Batch& batch : batches) {
    if (batch.logits().data().empty() && batch.labels().data().empty()) continue;
    const v1::DType logits = LogitsDType(batch.logits().dtype());
    const v1::DType labels = LabelsDType(batch.labels().dtype());
    if (first) {
      joined.mutable_logits()->set_dtype(logits);
      joined.mutable_labels()->set_dtype(labels);
      first = false;
    } else if (logits != joined.logits().dtype() || labels != joined.labels().dtype()) {
      return std::nullopt;
    }
    joined.mutable_logits()->mutable_data()->append(batch.logits().data());
    joined.mutable_labels()->mutable_data()->append(batch.labels().data());
  }
  return joined;
}

// EvaluateStreamReactor: a config first and only once, then batches, then the report
// once the client half-closes (here: at the end of the input). Bytes that do not parse
// end the call with INVALID_ARGUMENT, never with a report of the rows before them.
void EvaluateStream(google::protobuf::io::ZeroCopyInputStream* input) {
  std::unique_ptr<LimitedEvaluator> evaluator;
  v1::EvaluationConfig config;
  std::vector<v1::Batch> batches;
  v1::EvaluateStreamRequest message;
  bool clean_eof = false;
  while (google::protobuf::util::ParseDelimitedFromZeroCopyStream(&message, input,
                                                                  &clean_eof)) {
    if (message.has_config()) {
      if (evaluator != nullptr) return;  // FAILED_PRECONDITION, a second config
      absl::StatusOr<std::unique_ptr<LimitedEvaluator>> created =
          LimitedEvaluator::Create(message.config(), kLimits);
      CheckCode(created.status());
      if (!created.ok()) return;
      evaluator = std::move(*created);
      config = message.config();
    } else {
      // A batch first, or a message setting neither, ends the call.
      if (evaluator == nullptr || !message.has_batch()) return;
      const absl::Status added = evaluator->Add(message.batch());
      CheckCode(added);
      if (!added.ok()) return;
      batches.push_back(message.batch());
    }
  }
  if (!clean_eof || evaluator == nullptr) return;
  const absl::StatusOr<v1::Report> report = evaluator->Finish();
  CheckReport(report);
  if (!report.ok() || batches.size() < 2) return;

  const std::optional<v1::Batch> joined = Joined(batches);
  if (!joined) return;
  absl::StatusOr<std::unique_ptr<LimitedEvaluator>> whole =
      LimitedEvaluator::Create(config, kLimits);
  if (!whole.ok()) Fail("the config passed once, then failed", whole.status());
  const absl::Status added = (*whole)->Add(*joined);
  if (!added.ok()) Fail("the batches passed one by one, then failed joined", added);
  const absl::StatusOr<v1::Report> again = (*whole)->Finish();
  if (!again.ok()) Fail("the joined batches failed at Finish", again.status());
  if (Serialized(*report) != Serialized(*again)) {
    std::fprintf(stderr, "streamed:\n%s\njoined:\n%s\n", report->DebugString().c_str(),
                 again->DebugString().c_str());
    Fail("the report depends on how the rows were split into batches", absl::OkStatus());
  }
}

}  // namespace
}  // namespace calib

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // Two threads, like calibd --threads 2: the engine splits larger batches over them.
  static tbb::task_arena arena(2);
  const bool stream = (data[0] & 1) != 0;
  google::protobuf::io::ArrayInputStream input(data + 1, static_cast<int>(size - 1));
  arena.execute([&] {
    if (stream) {
      calib::EvaluateStream(&input);
    } else {
      calib::v1::EvaluateRequest request;
      if (request.ParseFromZeroCopyStream(&input)) calib::Evaluate(request);
    }
  });
  return 0;
}
