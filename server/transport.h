// How calibd's listening port is secured and how its connections live: the TLS (or
// mutual TLS) credentials of --tls-cert/--tls-key/--tls-client-ca, checked with OpenSSL
// before gRPC sees them so that a bad file is reported by flag and path, and the
// keepalive and connection-age channel arguments. Called once in main(); thread-safe.
#ifndef CALIB_SERVER_TRANSPORT_H_
#define CALIB_SERVER_TRANSPORT_H_

#include <grpcpp/grpcpp.h>

#include <memory>

#include "absl/status/statusor.h"
#include "server/server_options.h"

namespace calib {

// Insecure credentials when no --tls-cert is given. A file that cannot be read, holds
// no PEM certificate or key, or a key that is not the certificate's, is
// INVALID_ARGUMENT naming the flag and the path.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerOptions& options);

// Server keepalive, the ping policy clients must respect, and connection age.
void AddConnectionArguments(const ServerOptions& options, grpc::ServerBuilder* builder);

// The shortest interval between client pings calibd accepts. calib and calib_client
// ping every 30 s, well above it.
inline constexpr int kMinClientPingSeconds = 10;

}  // namespace calib

#endif  // CALIB_SERVER_TRANSPORT_H_
