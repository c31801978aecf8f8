#include "client/remote.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>

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

uint64_t RowsPerChunk(const EvalInput& input, uint64_t chunk_bytes) {
  const uint64_t row_bytes = input.num_classes * DTypeSize(input.logits.dtype) +
                             input.labels_per_row * DTypeSize(input.labels.dtype);
  return std::max<uint64_t>(1, chunk_bytes / row_bytes);
}

absl::StatusOr<v1::Report> EvaluateRemote(const std::string& server,
                                          const v1::EvaluationConfig& config,
                                          const EvalInput& input, uint64_t chunk_bytes,
                                          const ConnectionSecurity& security) {
  const uint64_t logits_row = input.num_classes * DTypeSize(input.logits.dtype);
  const uint64_t labels_row = input.labels_per_row * DTypeSize(input.labels.dtype);
  auto stub = v1::CalibrationService::NewStub(OpenChannel(
      server, RowsPerChunk(input, chunk_bytes) * (logits_row + labels_row), security));

  // Messages stay within half the server's limit, whatever --chunk-bytes asks.
  grpc::ClientContext info_context;
  Authorize(security, &info_context);
  v1::GetServerInfoResponse info;
  const grpc::Status info_status =
      stub->GetServerInfo(&info_context, v1::GetServerInfoRequest(), &info);
  if (!info_status.ok()) return FromGrpc(info_status, "GetServerInfo", server);
  if (info.max_message_bytes() > 0) {
    chunk_bytes = std::min<uint64_t>(chunk_bytes, info.max_message_bytes() / 2);
  }
  const uint64_t rows_per_chunk = RowsPerChunk(input, chunk_bytes);

  grpc::ClientContext context;
  Authorize(security, &context);
  v1::EvaluateStreamResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::EvaluateStreamRequest>> writer =
      stub->EvaluateStream(&context, &response);
  // One request reused for every batch, so its buffers are allocated once.
  v1::EvaluateStreamRequest request;
  *request.mutable_config() = config;
  bool open = writer->Write(request);
  v1::Batch* batch = request.mutable_batch();
  batch->mutable_logits()->set_dtype(input.logits.dtype);
  batch->mutable_labels()->set_dtype(input.labels.dtype);
  for (uint64_t row = 0; open && row < input.rows; row += rows_per_chunk) {
    const uint64_t rows = std::min(rows_per_chunk, input.rows - row);
    const std::string_view logits =
        input.logits.data.substr(row * logits_row, rows * logits_row);
    const std::string_view labels =
        input.labels.data.substr(row * labels_row, rows * labels_row);
    batch->mutable_logits()->mutable_data()->assign(logits.data(), logits.size());
    batch->mutable_labels()->mutable_data()->assign(labels.data(), labels.size());
    open = writer->Write(request);
  }
  // A failed Write means the server ended the call; Finish says why.
  if (open) writer->WritesDone();
  const grpc::Status status = writer->Finish();
  if (!status.ok()) return FromGrpc(status, "EvaluateStream", server);
  if (!open) {
    return absl::UnavailableError(absl::StrCat(
        "EvaluateStream to ", server, " failed: the server closed the stream early"));
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
