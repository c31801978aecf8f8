// The CLI's side of the wire: EvaluateRemote streams an evaluation to a calibd server
// (the config, then batches of whole rows) and CheckHealth asks grpc.health.v1 whether
// it serves, over plaintext, TLS or mutual TLS, with a bearer token when given. gRPC
// failures become an absl::Status with the same code and a message naming the call, the
// server, the status code and the server's own message (never the token).
// Thread-safe: each call opens its own channel.
#ifndef CALIB_CLIENT_REMOTE_H_
#define CALIB_CLIENT_REMOTE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "calib/v1/calibration.pb.h"
#include "client/input_files.h"
#include "grpc/health/v1/health.pb.h"

namespace calib {

inline constexpr uint64_t kDefaultChunkBytes = 4 << 20;
// Keepalive pings on a quiet connection; calibd accepts one every 10 s at most.
inline constexpr int kClientKeepaliveSeconds = 30;

// The paths of the CLI's --tls-ca, --tls-cert, --tls-key and --token-file; empty when
// not given.
struct SecurityFiles {
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string token_file;
};

// What SecurityFiles hold. root_pem empty: plaintext.
struct ConnectionSecurity {
  std::string root_pem;  // the CAs trusted to sign the server's certificate
  std::string cert_pem;  // with key_pem, the client's certificate for mutual TLS
  std::string key_pem;
  std::string token;  // sent as `authorization: Bearer <token>` on every call
};

// Reads the files. An unreadable file, one with no PEM block, or an empty token file is
// INVALID_ARGUMENT naming the flag and the path. The token loses its trailing whitespace.
absl::StatusOr<ConnectionSecurity> LoadConnectionSecurity(const SecurityFiles& files);

// `config` must already carry num_classes. The stream sends the config, then the rows
// in order, RowsPerChunk of them per message, then half-closes and waits for the Report.
absl::StatusOr<v1::Report> EvaluateRemote(const std::string& server,
                                          const v1::EvaluationConfig& config,
                                          const EvalInput& input, uint64_t chunk_bytes,
                                          const ConnectionSecurity& security = {});

// The serving status of `service` ("" for the server as a whole).
absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> CheckHealth(
    const std::string& server, const std::string& service,
    const ConnectionSecurity& security = {});

}  // namespace calib

#endif  // CALIB_CLIENT_REMOTE_H_
