#include "client/remote.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "calib/v1/calibration.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "src/status_macros.h"
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

absl::StatusOr<std::string> ReadFile(const char* flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat("flag --", flag, ": cannot read ",
                                                   path, ": ", std::strerror(errno)));
  }
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

absl::StatusOr<std::string> ReadPem(const char* flag, const std::string& path) {
  absl::StatusOr<std::string> pem = ReadFile(flag, path);
  if (pem.ok() && pem->find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("flag --", flag, ": ", path, " holds no PEM block"));
  }
  return pem;
}

// Every call carries the token, when there is one.
void Authorize(const ConnectionSecurity& security, grpc::ClientContext* context) {
  if (!security.token.empty()) {
    context->AddMetadata("authorization", "Bearer " + security.token);
  }
}

std::shared_ptr<grpc::Channel> OpenChannel(const std::string& server,
                                           uint64_t largest_message,
                                           const ConnectionSecurity& security) {
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
  // Within calibd's ping policy (transport.h): a ping every 30 s on a quiet connection,
  // also between calls and also during a long upload that gets no data back.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kClientKeepaliveSeconds * 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10 * 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  if (security.root_pem.empty()) {
    return grpc::CreateCustomChannel(server, grpc::InsecureChannelCredentials(), args);
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = security.root_pem;
  ssl.pem_private_key = security.key_pem;
  ssl.pem_cert_chain = security.cert_pem;
  return grpc::CreateCustomChannel(server, grpc::SslCredentials(ssl), args);
}

// The messages of EvaluateStream as raw bytes: each message is its few bytes of
// protobuf framing plus two slices into which the rows are read straight from the
// input's files, the one copy between the file and the socket. The server parses the
// same EvaluateStreamRequest as from a generated stub.
class BatchMessages {
 public:
  BatchMessages(const EvalInput& input, uint64_t rows_per_chunk)
      : input_(input), rows_per_chunk_(rows_per_chunk) {}

  // No rows are one empty batch, so that the server still checks the dtypes.
  bool done() const { return next_row_ >= input_.rows && batches_ > 0; }

  // The next batch; call only while !done(). A read's error names the file.
  absl::StatusOr<grpc::ByteBuffer> Next() {
    const uint64_t row = next_row_;
    const uint64_t rows = std::min(rows_per_chunk_, input_.rows - row);
    next_row_ += rows;
    ++batches_;
    const uint64_t logits_size = rows * input_.logits_row_bytes();
    const uint64_t labels_size = rows * input_.labels_row_bytes();
    grpc::Slice logits(logits_size);
    grpc::Slice labels(labels_size);
    CALIB_RETURN_IF_ERROR(input_.ReadRows(row, rows, Writable(logits), Writable(labels)));

    // EvaluateStreamRequest{batch = 2: Batch{logits = 1, labels = 2: Tensor}};
    // Tensor{dtype = 1: varint, data = 2: bytes}.
    const std::string logits_head = TensorHead(1, input_.logits.dtype, logits_size);
    const std::string labels_head = TensorHead(2, input_.labels.dtype, labels_size);
    std::string head;
    PutTag(2, &head);
    PutVarint(logits_head.size() + logits_size + labels_head.size() + labels_size, &head);
    head += logits_head;
    const grpc::Slice slices[] = {grpc::Slice(head), logits, grpc::Slice(labels_head),
                                  labels};
    return grpc::ByteBuffer(slices, 4);
  }

 private:
  // A slice just allocated is this message's alone until it is sent.
  static char* Writable(const grpc::Slice& slice) {
    return reinterpret_cast<char*>(const_cast<uint8_t*>(slice.begin()));
  }

  // The tag of length-delimited field `field`.
  static void PutTag(int field, std::string* out) {
    out->push_back(static_cast<char>(field << 3 | 2));
  }

  static void PutVarint(uint64_t value, std::string* out) {
    for (; value >= 0x80; value >>= 7) out->push_back(static_cast<char>(value | 0x80));
    out->push_back(static_cast<char>(value));
  }

  // A Tensor field's tag and length, its dtype, and its data's tag and length.
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

  const EvalInput& input_;
  const uint64_t rows_per_chunk_;
  uint64_t next_row_ = 0;
  uint64_t batches_ = 0;
};

// One EvaluateStream call on a completion queue of its own (gRPC's callback API was
// measured to stall channel teardown here for ~10 s). One write is in flight at a time,
// the next message handed over as soon as gRPC takes the previous one, while the
// server computes; the read of the Report is posted up front.
class StreamCall {
 public:
  StreamCall(grpc::GenericStub* stub, grpc::ClientContext* context)
      : context_(context),
        call_(stub->PrepareCall(context, kEvaluateStreamMethod, &queue_)) {}

  ~StreamCall() {
    queue_.Shutdown();
    void* tag;
    bool ok;
    while (queue_.Next(&tag, &ok)) {
    }
  }

  // Sends `config` then every batch, half-closes and returns the call's status; false
  // in *all_sent when the server ended the call before taking every message. A batch
  // that cannot be read cancels the call, and *read_status says why.
  grpc::Status Run(const v1::EvaluationConfig& config, BatchMessages* batches,
                   bool* all_sent, absl::Status* read_status) {
    call_->StartCall(Tag(kStart));
    bool open = Await(kStart);
    if (open) call_->Read(&response_, Tag(kRead));
    reading_ = open;
    v1::EvaluateStreamRequest first;
    *first.mutable_config() = config;
    const std::string config_bytes = first.SerializeAsString();
    grpc::Slice config_slice(config_bytes);
    grpc::ByteBuffer message(&config_slice, 1);
    while (open) {
      call_->Write(message, Tag(kWrite));
      open = Await(kWrite);
      if (!open || batches->done()) break;
      absl::StatusOr<grpc::ByteBuffer> next = batches->Next();
      if (!next.ok()) {
        *read_status = next.status();
        context_->TryCancel();
        open = false;
        break;
      }
      message = *std::move(next);
    }
    *all_sent = open;
    if (open) {
      call_->WritesDone(Tag(kWritesDone));
      Await(kWritesDone);
    }
    grpc::Status status;
    call_->Finish(&status, Tag(kFinish));
    Await(kFinish);
    if (reading_) Await(kRead);
    return status;
  }

  grpc::ByteBuffer* response() { return &response_; }

 private:
  enum Op : intptr_t { kStart = 1, kRead, kWrite, kWritesDone, kFinish };

  static void* Tag(Op op) { return reinterpret_cast<void*>(op); }

  // Waits for `op`; the Report's read may complete first, and is noted.
  bool Await(Op op) {
    void* tag;
    bool ok = false;
    while (queue_.Next(&tag, &ok)) {
      if (tag == Tag(op)) return ok;
      if (tag == Tag(kRead)) reading_ = false;
    }
    return false;
  }

  grpc::ClientContext* const context_;
  grpc::CompletionQueue queue_;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call_;
  grpc::ByteBuffer response_;
  bool reading_ = false;
};

}  // namespace

absl::StatusOr<ConnectionSecurity> LoadConnectionSecurity(const SecurityFiles& files) {
  ConnectionSecurity security;
  if (!files.tls_ca.empty()) {
    CALIB_ASSIGN_OR_RETURN(security.root_pem, ReadPem("tls-ca", files.tls_ca));
  }
  if (!files.tls_cert.empty()) {
    CALIB_ASSIGN_OR_RETURN(security.cert_pem, ReadPem("tls-cert", files.tls_cert));
  }
  if (!files.tls_key.empty()) {
    CALIB_ASSIGN_OR_RETURN(security.key_pem, ReadPem("tls-key", files.tls_key));
  }
  if (!files.token_file.empty()) {
    CALIB_ASSIGN_OR_RETURN(const std::string text,
                           ReadFile("token-file", files.token_file));
    security.token = std::string(absl::StripTrailingAsciiWhitespace(text));
    if (security.token.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --token-file: ", files.token_file, " holds no token"));
    }
  }
  return security;
}

absl::StatusOr<v1::Report> EvaluateRemote(const std::string& server,
                                          const v1::EvaluationConfig& config,
                                          const EvalInput& input, uint64_t chunk_bytes,
                                          const ConnectionSecurity& security) {
  const std::shared_ptr<grpc::Channel> channel =
      OpenChannel(server,
                  RowsPerChunk(input, chunk_bytes) *
                      (input.logits_row_bytes() + input.labels_row_bytes()),
                  security);

  // Messages stay within half the server's limit, whatever --chunk-bytes asks.
  auto stub = v1::CalibrationService::NewStub(channel);
  grpc::ClientContext info_context;
  Authorize(security, &info_context);
  v1::GetServerInfoResponse info;
  const grpc::Status info_status =
      stub->GetServerInfo(&info_context, v1::GetServerInfoRequest(), &info);
  if (!info_status.ok()) return FromGrpc(info_status, "GetServerInfo", server);
  if (info.max_message_bytes() > 0) {
    chunk_bytes = std::min<uint64_t>(chunk_bytes, info.max_message_bytes() / 2);
  }

  grpc::GenericStub generic(channel);
  grpc::ClientContext context;
  Authorize(security, &context);
  BatchMessages batches(input, RowsPerChunk(input, chunk_bytes));
  StreamCall call(&generic, &context);
  bool all_sent = false;
  absl::Status read_status;
  const grpc::Status status = call.Run(config, &batches, &all_sent, &read_status);
  if (!read_status.ok()) return read_status;
  if (!status.ok()) return FromGrpc(status, "EvaluateStream", server);
  if (!all_sent) {
    return absl::UnavailableError(absl::StrCat(
        "EvaluateStream to ", server, " failed: the server closed the stream early"));
  }
  v1::EvaluateStreamResponse response;
  if (!grpc::SerializationTraits<v1::EvaluateStreamResponse>::Deserialize(call.response(),
                                                                          &response)
           .ok()) {
    return absl::InternalError(
        absl::StrCat("EvaluateStream to ", server, ": the Report does not parse"));
  }
  return std::move(*response.mutable_report());
}

absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> CheckHealth(
    const std::string& server, const std::string& service,
    const ConnectionSecurity& security) {
  auto stub = grpc::health::v1::Health::NewStub(OpenChannel(server, 0, security));
  grpc::ClientContext context;
  Authorize(security, &context);
  context.set_deadline(std::chrono::system_clock::now() + kHealthDeadline);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) return FromGrpc(status, "health check", server);
  return response.status();
}

}  // namespace calib
