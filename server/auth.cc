#include "server/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/call_log.h"
#include "server/grpc_status.h"

namespace calib {
namespace {

constexpr absl::string_view kScheme = "Bearer ";

// nullopt when libcrypto fails (out of memory): then nothing matches.
std::optional<std::array<unsigned char, 32>> Sha256(absl::string_view text) {
  std::array<unsigned char, 32> digest{};
  unsigned int size = 0;
  if (EVP_Digest(text.data(), text.size(), digest.data(), &size, EVP_sha256(), nullptr) !=
          1 ||
      size != digest.size()) {
    return std::nullopt;
  }
  return digest;
}

absl::Status Unauthenticated(absl::string_view why) {
  return absl::UnauthenticatedError(
      absl::StrCat(why,
                   ": calls to this server carry the metadata "
                   "'authorization: Bearer <token>' (calib --token-file)"));
}

// A call refused before it reached the service: answered and logged at once.
grpc::ServerUnaryReactor* RefuseUnary(grpc::CallbackServerContext* context,
                                      const char* method, uint64_t bytes,
                                      const absl::Status& status,
                                      ServerMetrics* metrics) {
  CallLog log(method, context->peer());
  log.AddBytes(bytes);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const grpc::Status result = ToGrpcStatus(status);
  reactor->Finish(result);
  log.Write(result.error_code());
  metrics->CallEnded(method, result.error_code());
  return reactor;
}

// A stream refused before its first message is read.
class RefusedStream final : public grpc::ServerReadReactor<v1::EvaluateStreamRequest> {
 public:
  RefusedStream(grpc::CallbackServerContext* context, const absl::Status& status,
                ServerMetrics* metrics)
      : log_(kMethod, context->peer(), CallLog::Kind::kClientStream),
        result_(ToGrpcStatus(status)),
        metrics_(metrics) {
    Finish(result_);
  }

  void OnDone() override {
    log_.Write(result_.error_code());
    metrics_->CallEnded(kMethod, result_.error_code());
    delete this;
  }

 private:
  static constexpr char kMethod[] = "EvaluateStream";

  CallLog log_;
  const grpc::Status result_;
  ServerMetrics* const metrics_;
};

}  // namespace

absl::StatusOr<BearerToken> BearerToken::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat("flag --auth-token-file: cannot read ",
                                                   path, ": ", std::strerror(errno)));
  }
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  const absl::string_view token = absl::StripTrailingAsciiWhitespace(text);
  if (token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("flag --auth-token-file: ", path, " holds no token"));
  }
  for (const char c : token) {
    // What a gRPC metadata value can carry after "Bearer ", less the space.
    if (c <= ' ' || c > '~') {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --auth-token-file: the token in ", path,
                       " has a character other than printable ASCII without spaces"));
    }
  }
  const std::optional<std::array<unsigned char, 32>> digest = Sha256(token);
  // The file's copy goes; only the digest stays in memory.
  OPENSSL_cleanse(text.data(), text.size());
  if (!digest) return absl::InternalError("cannot compute SHA-256 with libcrypto");
  return BearerToken(*digest);
}

bool BearerToken::Matches(absl::string_view authorization) const {
  // The scheme is public, so checking it first leaks nothing.
  if (authorization.size() < kScheme.size() ||
      !absl::EqualsIgnoreCase(authorization.substr(0, kScheme.size()), kScheme)) {
    return false;
  }
  const std::optional<std::array<unsigned char, 32>> presented =
      Sha256(authorization.substr(kScheme.size()));
  return presented &&
         CRYPTO_memcmp(presented->data(), digest_.data(), digest_.size()) == 0;
}

absl::Status BearerToken::Check(const grpc::ServerContextBase& context) const {
  const auto [begin, end] = context.client_metadata().equal_range("authorization");
  if (begin == end) return Unauthenticated("no authorization metadata");
  if (std::next(begin) != end) {
    return Unauthenticated("more than one authorization metadata entry");
  }
  if (!Matches(absl::string_view(begin->second.data(), begin->second.size()))) {
    return Unauthenticated("the bearer token is not this server's");
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* TokenCheckedService::Evaluate(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  const absl::Status status = token_->Check(*context);
  if (!status.ok()) {
    return RefuseUnary(context, "Evaluate", request->Length(), status, metrics_);
  }
  return inner_->Evaluate(context, request, response);
}

grpc::ServerReadReactor<v1::EvaluateStreamRequest>* TokenCheckedService::EvaluateStream(
    grpc::CallbackServerContext* context, v1::EvaluateStreamResponse* response) {
  const absl::Status status = token_->Check(*context);
  if (!status.ok()) return new RefusedStream(context, status, metrics_);
  return inner_->EvaluateStream(context, response);
}

grpc::ServerUnaryReactor* TokenCheckedService::GetServerInfo(
    grpc::CallbackServerContext* context, const v1::GetServerInfoRequest* request,
    v1::GetServerInfoResponse* response) {
  const absl::Status status = token_->Check(*context);
  if (!status.ok()) return RefuseUnary(context, "GetServerInfo", 0, status, metrics_);
  return inner_->GetServerInfo(context, request, response);
}

}  // namespace calib
