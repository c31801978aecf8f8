#include "client/remote.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "calib/v1/calibration.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "src/tensor.h"

namespace calib {
namespace {

constexpr auto kHealthDeadline = std::chrono::seconds(10);
// Room for the message framing around a batch's tensor bytes.
constexpr uint64_t kMessageOverhead = 1 << 20;
constexpr char kEvaluateStreamMethod[] = "/calib.v1.CalibrationService/EvaluateStream";

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNRECOGNIZED_CODE";
  }
}

// gRPC 1.51's status codes have absl's numeric values, so the code carries over.
absl::Status FromGrpc(const grpc::Status& status, const char* call,
                      const std::string& server) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(
      static_cast<absl::StatusCode>(status.error_code()),
      absl::StrCat(call, " to ", server, " failed: ", CodeName(status.error_code()), ": ",
                   status.error_message()));
}

std::shared_ptr<grpc::Channel> OpenChannel(const std::string& server,
                                           uint64_t largest_message) {
  grpc::ChannelArguments args;
  const uint64_t send_limit = largest_message + kMessageOverhead;
  args.SetMaxSendMessageSize(
      static_cast<int>(std::min<uint64_t>(send_limit, std::numeric_limits<int>::max())));
  // A Report with thousands of bins, before and after scaling, can pass gRPC's default
  // 4 MiB receive limit.
  args.SetMaxReceiveMessageSize(-1);
  // A target that names several servers (`ipv4:127.0.0.1:P1,127.0.0.1:P2`, or a headless
  // Kubernetes Service through `dns:///`) spreads calls over all of them.
  args.SetLoadBalancingPolicyName("round_robin");
  return grpc::CreateCustomChannel(server, grpc::InsecureChannelCredentials(), args);
}

// EvaluateStream as raw messages, so that a batch's bytes go from the mapped file to
// the socket without a copy: each message is its few bytes of protobuf framing plus
// slices that borrow the rows from the input's storage (and keep it alive for as long
// as gRPC holds them). The server sees the same EvaluateStreamRequest as from a
// generated stub. The next message is handed over as soon as gRPC takes the previous
// one, so reading the file, sending and the server's computing overlap.
class BatchStream final
    : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  BatchStream(const v1::EvaluationConfig& config, const EvalInput& input,
              uint64_t rows_per_chunk)
      : input_(input), rows_per_chunk_(rows_per_chunk) {
    v1::EvaluateStreamRequest request;
    *request.mutable_config() = config;
    const std::string bytes = request.SerializeAsString();
    grpc::Slice slice(bytes);
    message_ = grpc::ByteBuffer(&slice, 1);
  }

  // Sends everything and waits for the end of the call.
  grpc::Status Run() {
    StartRead(&response_);
    StartWrite(&message_);
    StartCall();
    std::unique_lock<std::mutex> lock(mutex_);
    done_cv_.wait(lock, [this] { return done_; });
    return status_;
  }

  // Whether every message went out (read after Run returns).
  bool all_sent() const { return !write_failed_ && next_row_ >= input_.rows; }

  absl::StatusOr<v1::Report> TakeReport() {
    v1::EvaluateStreamResponse response;
    const grpc::Status parsed =
        grpc::SerializationTraits<v1::EvaluateStreamResponse>::Deserialize(&response_,
                                                                           &response);
    if (!parsed.ok()) {
      return absl::InternalError("EvaluateStream: the server's Report does not parse");
    }
    return std::move(*response.mutable_report());
  }

  void OnWriteDone(bool ok) override {
    // Not ok: the server ended the call; OnDone has its status.
    if (!ok) {
      write_failed_ = true;
      return;
    }
    if (next_row_ >= input_.rows) {
      StartWritesDone();
      return;
    }
    NextBatch();
    StartWrite(&message_);
  }

  void OnReadDone(bool /*ok*/) override {}

  void OnDone(const grpc::Status& status) override {
    std::lock_guard<std::mutex> lock(mutex_);
    status_ = status;
    done_ = true;
    done_cv_.notify_one();
  }

 private:
  void NextBatch() {
    const uint64_t rows = std::min(rows_per_chunk_, input_.rows - next_row_);
    const uint64_t logits_row = input_.num_classes * DTypeSize(input_.logits.dtype);
    const uint64_t labels_row = input_.labels_per_row * DTypeSize(input_.labels.dtype);
    const std::string_view logits =
        input_.logits.data.substr(next_row_ * logits_row, rows * logits_row);
    const std::string_view labels =
        input_.labels.data.substr(next_row_ * labels_row, rows * labels_row);
    next_row_ += rows;

    // Batch{logits = 1: Tensor, labels = 2: Tensor} inside EvaluateStreamRequest's
    // field 2; Tensor{dtype = 1: varint, data = 2: bytes}.
    const std::string logits_head = TensorHead(1, input_.logits.dtype, logits.size());
    const std::string labels_head = TensorHead(2, input_.labels.dtype, labels.size());
    std::string head;
    PutTag(2, &head);
    PutVarint(logits_head.size() + logits.size() + labels_head.size() + labels.size(),
              &head);
    head += logits_head;
    const grpc::Slice slices[] = {
        grpc::Slice(head), Borrow(logits, input_.logits.storage),
        grpc::Slice(labels_head), Borrow(labels, input_.labels.storage)};
    message_ = grpc::ByteBuffer(slices, 4);
  }

  // The length-delimited field `field`'s tag.
  static void PutTag(int field, std::string* out) {
    out->push_back(static_cast<char>(field << 3 | 2));
  }

  static void PutVarint(uint64_t value, std::string* out) {
    for (; value >= 0x80; value >>= 7) out->push_back(static_cast<char>(value | 0x80));
    out->push_back(static_cast<char>(value));
  }

  // A Tensor field's tag and length, its dtype field, and the tag and length of its data.
  static std::string TensorHead(int field, v1::DType dtype, uint64_t data_size) {
    std::string tensor;
    if (dtype != v1::DTYPE_UNSPECIFIED) {
      tensor.push_back(1 << 3);  // field 1, varint
      PutVarint(static_cast<uint64_t>(dtype), &tensor);
    }
    PutTag(2, &tensor);
    PutVarint(data_size, &tensor);
    std::string head;
    PutTag(field, &head);
    PutVarint(tensor.size() + data_size, &head);
    return head + tensor;
  }

  static grpc::Slice Borrow(std::string_view bytes,
                            const std::shared_ptr<const void>& storage) {
    if (bytes.empty()) return grpc::Slice();
    return grpc::Slice(const_cast<char*>(bytes.data()), bytes.size(), &ReleaseStorage,
                       new std::shared_ptr<const void>(storage));
  }

  static void ReleaseStorage(void* storage) {
    delete static_cast<std::shared_ptr<const void>*>(storage);
  }

  const EvalInput& input_;
  const uint64_t rows_per_chunk_;
  // Touched by one gRPC callback at a time, and by Run's caller after OnDone.
  uint64_t next_row_ = 0;
  bool write_failed_ = false;
  grpc::ByteBuffer message_;
  grpc::ByteBuffer response_;
  std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  grpc::Status status_;
};

}  // namespace

uint64_t RowsPerChunk(const EvalInput& input, uint64_t chunk_bytes) {
  const uint64_t row_bytes = input.num_classes * DTypeSize(input.logits.dtype) +
                             input.labels_per_row * DTypeSize(input.labels.dtype);
  return std::max<uint64_t>(1, chunk_bytes / row_bytes);
}

absl::StatusOr<v1::Report> EvaluateRemote(const std::string& server,
                                          const v1::EvaluationConfig& config,
                                          const EvalInput& input, uint64_t chunk_bytes) {
  const uint64_t logits_row = input.num_classes * DTypeSize(input.logits.dtype);
  const uint64_t labels_row = input.labels_per_row * DTypeSize(input.labels.dtype);
  const std::shared_ptr<grpc::Channel> channel =
      OpenChannel(server, RowsPerChunk(input, chunk_bytes) * (logits_row + labels_row));

  // Messages stay within half the server's limit, whatever --chunk-bytes asks.
  auto stub = v1::CalibrationService::NewStub(channel);
  grpc::ClientContext info_context;
  v1::GetServerInfoResponse info;
  const grpc::Status info_status =
      stub->GetServerInfo(&info_context, v1::GetServerInfoRequest(), &info);
  if (!info_status.ok()) return FromGrpc(info_status, "GetServerInfo", server);
  if (info.max_message_bytes() > 0) {
    chunk_bytes = std::min<uint64_t>(chunk_bytes, info.max_message_bytes() / 2);
  }

  grpc::GenericStub generic(channel);
  grpc::ClientContext context;
  BatchStream stream(config, input, RowsPerChunk(input, chunk_bytes));
  generic.PrepareBidiStreamingCall(&context, kEvaluateStreamMethod, grpc::StubOptions(),
                                   &stream);
  const grpc::Status status = stream.Run();
  if (!status.ok()) return FromGrpc(status, "EvaluateStream", server);
  if (!stream.all_sent()) {
    return absl::UnavailableError(absl::StrCat(
        "EvaluateStream to ", server, " failed: the server closed the stream early"));
  }
  return stream.TakeReport();
}

absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> CheckHealth(
    const std::string& server, const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(OpenChannel(server, 0));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kHealthDeadline);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) return FromGrpc(status, "health check", server);
  return response.status();
}

}  // namespace calib
