// Bearer-token authentication of calibd's calls. BearerToken holds only the SHA-256
// digest of the token read from --auth-token-file and checks a call's
// `authorization: Bearer <token>` metadata in constant time; TokenCheckedService puts
// that check in front of every CalibrationService method (health and reflection are
// separate services, so they stay open to probes). Never logs or echoes a token. Both are
// immutable after construction and thread-safe.
#ifndef CALIB_SERVER_AUTH_H_
#define CALIB_SERVER_AUTH_H_

#include <grpcpp/grpcpp.h>

#include <array>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "calib/v1/calibration.grpc.pb.h"
#include "server/calibration_service.h"
#include "server/server_metrics.h"

namespace calib {

class BearerToken {
 public:
  // Reads the token once: trailing whitespace (the file's newline) is dropped. An
  // unreadable or empty file, or a token that cannot travel in gRPC metadata (not
  // printable ASCII, or with a space), is INVALID_ARGUMENT naming the flag and path.
  static absl::StatusOr<BearerToken> FromFile(const std::string& path);

  // OK when the call carries exactly one `authorization` entry, `Bearer <the token>`
  // (the scheme in any case); UNAUTHENTICATED otherwise, saying what is missing but
  // never what was sent or expected.
  absl::Status Check(const grpc::ServerContextBase& context) const;
  // The comparison itself, on an `authorization` value. Its time depends on neither
  // the token nor the value's content: both sides are hashed before a CRYPTO_memcmp.
  bool Matches(absl::string_view authorization) const;

 private:
  explicit BearerToken(const std::array<unsigned char, 32>& digest) : digest_(digest) {}

  std::array<unsigned char, 32> digest_;
};

// Serves `inner` to callers with the token; calls without it end UNAUTHENTICATED at
// once, logged by the call log and counted in `metrics` like any other call. `inner`,
// `token` and `metrics` must outlive it.
class TokenCheckedService final : public CalibrationCallbackService {
 public:
  TokenCheckedService(CalibrationCallbackService* inner, const BearerToken* token,
                      ServerMetrics* metrics)
      : inner_(inner), token_(token), metrics_(metrics) {}

  grpc::ServerUnaryReactor* Evaluate(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerReadReactor<v1::EvaluateStreamRequest>* EvaluateStream(
      grpc::CallbackServerContext* context,
      v1::EvaluateStreamResponse* response) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const v1::GetServerInfoRequest* request,
                                          v1::GetServerInfoResponse* response) override;

 private:
  CalibrationCallbackService* const inner_;
  const BearerToken* const token_;
  ServerMetrics* const metrics_;
};

}  // namespace calib

#endif  // CALIB_SERVER_AUTH_H_
