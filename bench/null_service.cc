// null_service: the wire alone, as a yardstick for calibd. It serves
// calib.v1.CalibrationService's GetServerInfo (so `calib eval --server` talks to it) and
// EvaluateStream, which receives and parses every message like calibd and discards it,
// then answers an empty Report. Prints "null_service listening on HOST:PORT" once
// serving.
//   null_service [--listen 127.0.0.1:0] [--max-message-bytes 67108864]
// Runs until killed. Not for production: no limits, no checks, no health service.
#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "calib/v1/calibration.grpc.pb.h"
#include "src/keep_freed_memory.h"

namespace calib {
namespace {

// Reads until the client half-closes, reusing one request as calibd does.
class DiscardReactor final : public grpc::ServerReadReactor<v1::EvaluateStreamRequest> {
 public:
  DiscardReactor() {
    StartSendInitialMetadata();
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (ok) {
      StartRead(&request_);
    } else {
      Finish(grpc::Status::OK);
    }
  }

  void OnDone() override { delete this; }

 private:
  v1::EvaluateStreamRequest request_;
};

class NullService final : public v1::CalibrationService::CallbackService {
 public:
  explicit NullService(uint64_t max_message_bytes)
      : max_message_bytes_(max_message_bytes) {}

  grpc::ServerReadReactor<v1::EvaluateStreamRequest>* EvaluateStream(
      grpc::CallbackServerContext* /*context*/,
      v1::EvaluateStreamResponse* response) override {
    response->mutable_report();
    return new DiscardReactor();
  }

  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const v1::GetServerInfoRequest* /*request*/,
                                          v1::GetServerInfoResponse* response) override {
    response->set_version("null");
    response->set_max_message_bytes(max_message_bytes_);
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  const uint64_t max_message_bytes_;
};

int Serve(int argc, char** argv) {
  std::string listen = "127.0.0.1:0";
  uint64_t max_message_bytes = 64 << 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--listen") == 0) {
      listen = argv[i + 1];
    } else if (std::strcmp(argv[i], "--max-message-bytes") == 0) {
      max_message_bytes = std::strtoull(argv[i + 1], nullptr, 10);
    } else {
      std::fprintf(stderr,
                   "usage: null_service [--listen H:P] [--max-message-bytes N]\n");
      return 2;
    }
  }
  // calibd's allocator settings: without them every message lands on fresh pages, and
  // the page faults, not the wire, set the pace.
  KeepFreedMemory();
  NullService service(max_message_bytes);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(max_message_bytes));
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "null_service: cannot listen on %s\n", listen.c_str());
    return 1;
  }
  std::printf("null_service listening on %s:%d\n",
              listen.substr(0, listen.rfind(':')).c_str(), port);
  std::fflush(stdout);
  server->Wait();
  return 0;
}

}  // namespace
}  // namespace calib

int main(int argc, char** argv) { return calib::Serve(argc, argv); }
