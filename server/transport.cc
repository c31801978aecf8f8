#include "server/transport.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "src/status_macros.h"

namespace calib {
namespace {

absl::Status BadFile(const char* flag, const std::string& path, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("flag --", flag, ": ", path, ": ", why));
}

absl::StatusOr<std::string> ReadPem(const char* flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return BadFile(flag, path, absl::StrCat("cannot read: ", std::strerror(errno)));
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* x509) const { X509_free(x509); }
};
struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
using Certificate = std::unique_ptr<X509, X509Free>;
using PrivateKey = std::unique_ptr<EVP_PKEY, KeyFree>;

Bio MemoryBio(const std::string& pem) {
  return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// The first certificate of a PEM file (a chain's leaf, or a bundle's first CA).
Certificate FirstCertificate(const std::string& pem) {
  Bio bio = MemoryBio(pem);
  return Certificate(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)
                         : nullptr);
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerOptions& options) {
  if (options.tls_cert.empty()) return grpc::InsecureServerCredentials();
  CALIB_ASSIGN_OR_RETURN(std::string cert_pem, ReadPem("tls-cert", options.tls_cert));
  CALIB_ASSIGN_OR_RETURN(std::string key_pem, ReadPem("tls-key", options.tls_key));
  const Certificate cert = FirstCertificate(cert_pem);
  if (cert == nullptr) {
    return BadFile("tls-cert", options.tls_cert, "holds no PEM certificate");
  }
  Bio key_bio = MemoryBio(key_pem);
  const PrivateKey key(
      key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr)
              : nullptr);
  if (key == nullptr) {
    ERR_clear_error();
    return BadFile("tls-key", options.tls_key, "holds no unencrypted PEM private key");
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return BadFile(
        "tls-key", options.tls_key,
        absl::StrCat("is not the key of the certificate in ", options.tls_cert));
  }

  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (!options.tls_client_ca.empty()) {
    CALIB_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                           ReadPem("tls-client-ca", options.tls_client_ca));
    if (FirstCertificate(ssl.pem_root_certs) == nullptr) {
      ERR_clear_error();
      return BadFile("tls-client-ca", options.tls_client_ca, "holds no PEM certificate");
    }
    ssl.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  ssl.pem_key_cert_pairs.push_back({std::move(key_pem), std::move(cert_pem)});
  return grpc::SslServerCredentials(ssl);
}

void AddConnectionArguments(const ServerOptions& options, grpc::ServerBuilder* builder) {
  const auto ms = [](uint64_t seconds) { return static_cast<int>(seconds * 1000); };
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, ms(options.keepalive_seconds));
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                              ms(options.keepalive_timeout_seconds));
  // Also lets clients ping a connection that has no call (gRPC's default allows that
  // once in 2 h), so an idle calib_client keeps its connection through NAT.
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // gRPC stops pinging after 2 pings without data sent by default; a long upload gets no
  // data from the server until its report.
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Pings more often than this are strikes; a client at the default 2 strikes is sent
  // GOAWAY (too_many_pings).
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                              ms(kMinClientPingSeconds));
  if (options.max_connection_age_seconds > 0) {
    builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                                ms(options.max_connection_age_seconds));
  }
  if (options.max_connection_age_grace_seconds > 0) {
    builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                                ms(options.max_connection_age_grace_seconds));
  }
}

}  // namespace calib
