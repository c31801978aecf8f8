// calibd: serves calib.v1.CalibrationService, grpc.health.v1 and server reflection,
// over plaintext, TLS or mutual TLS, with an optional bearer token on the calib calls.
// Prints "calibd listening on HOST:PORT" on stdout once serving (the chosen port when
// --listen asks for port 0), then "calibd metrics on http://HOST:PORT/metrics" when
// --metrics-listen is given, one line per finished call on stderr; on SIGTERM or SIGINT
// reports NOT_SERVING, lets calls in flight end within --grace-seconds, and exits 0.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/impl/server_builder_plugin.h>
#include <prometheus/exposer.h>
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "oneapi/tbb/global_control.h"
#include "oneapi/tbb/task_arena.h"
#include "server/admission.h"
#include "server/auth.h"
#include "server/calibration_service.h"
#include "server/server_metrics.h"
#include "server/server_options.h"
#include "server/transport.h"
#include "src/huge_pages.h"
#include "src/keep_freed_memory.h"
#include "src/memory_budget.h"

namespace calib {
namespace {

// Linking grpc++_reflection as a shared library registers its plugin with every
// ServerBuilder at load time, so --reflection=false has to take it out again.
class WithoutReflection final : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments* /*args*/) override {}
  void UpdatePlugins(
      std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    std::erase_if(*plugins, [](const std::unique_ptr<grpc::ServerBuilderPlugin>& plugin) {
      return dynamic_cast<grpc::reflection::ProtoServerReflectionPlugin*>(plugin.get()) !=
             nullptr;
    });
  }
};

int Serve(const ServerOptions& options) {
  KeepFreedMemory();
  // As much as one fit store's block (a size class is at most an eighth over the
  // request), so that fit after fit writes to mapped pages.
  KeepFreedLargeBlocks(options.fit_store_bytes + options.fit_store_bytes / 8);
  // Files first: a bad certificate, key or token file ends calibd before it listens.
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      MakeServerCredentials(options);
  if (!credentials.ok()) {
    std::fprintf(stderr, "calibd: %s\n",
                 std::string(credentials.status().message()).c_str());
    return 1;
  }
  std::optional<BearerToken> token;
  if (!options.auth_token_file.empty()) {
    absl::StatusOr<BearerToken> read = BearerToken::FromFile(options.auth_token_file);
    if (!read.ok()) {
      std::fprintf(stderr, "calibd: %s\n", std::string(read.status().message()).c_str());
      return 1;
    }
    token = *read;
    if (options.tls_cert.empty()) {
      std::fprintf(stderr,
                   "calibd: warning: --auth-token-file without --tls-cert: bearer tokens "
                   "cross the network in clear text; use this only on loopback or "
                   "inside an encrypted mesh\n");
    }
  }

  // SIGTERM and SIGINT are blocked in every thread (threads inherit this mask) and taken
  // by sigwait below, so no signal handler runs and gRPC is only called from a thread.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  // The arena takes only enqueued work, so every one of its slots is for a worker; the
  // global limit is raised to match (TBB's default is one worker fewer than the cores).
  tbb::global_control workers(tbb::global_control::max_allowed_parallelism,
                              static_cast<size_t>(options.threads) + 1);
  tbb::task_arena arena(options.threads, /*reserved_for_masters=*/0);
  arena.initialize();

  MemoryBudget budget(options.memory_budget_bytes, "--memory-budget-bytes");
  Admission admission(options.max_concurrent_evaluations);
  // Shared so that the Exposer, which holds it weakly, can be handed it.
  auto metrics = std::make_shared<ServerMetrics>(&admission, &budget);
  CalibrationServiceImpl service(
      EvaluationLimits{
          .max_rows = options.max_rows,
          .max_classes = options.max_classes,
          .stores = {.budget = &budget, .fit_store_bytes = options.fit_store_bytes}},
      options.max_message_bytes, &arena, &admission, metrics.get());
  std::optional<TokenCheckedService> checked;
  if (token) checked.emplace(&service, &*token, metrics.get());

  std::unique_ptr<prometheus::Exposer> exposer;
  if (!options.metrics_listen.empty()) {
    try {
      exposer = std::make_unique<prometheus::Exposer>(options.metrics_listen);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "calibd: cannot serve metrics on %s: %s\n",
                   options.metrics_listen.c_str(), e.what());
      return 1;
    }
    exposer->RegisterCollectable(metrics);
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  if (options.reflection) {
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  } else {
    builder.SetOption(std::make_unique<WithoutReflection>());
  }
  int port = 0;
  builder.AddListeningPort(options.listen, *credentials, &port);
  AddConnectionArguments(options, &builder);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  if (checked) {
    builder.RegisterService(&*checked);
  } else {
    builder.RegisterService(&service);
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "calibd: cannot listen on %s\n", options.listen.c_str());
    return 1;
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus("", true);
  health->SetServingStatus(v1::CalibrationService::service_full_name(), true);

  const std::string host = options.listen.substr(0, options.listen.rfind(':'));
  std::printf("calibd listening on %s:%d\n", host.c_str(), port);
  if (exposer != nullptr) {
    const std::string metrics_host =
        options.metrics_listen.substr(0, options.metrics_listen.rfind(':'));
    std::printf("calibd metrics on http://%s:%d/metrics\n", metrics_host.c_str(),
                exposer->GetListeningPorts().front());
  }
  std::fflush(stdout);

  int signal_number = 0;
  while (sigwait(&stop_signals, &signal_number) != 0) {
  }
  std::fprintf(stderr, "calibd: %s, shutting down within %g s\n",
               signal_number == SIGTERM ? "SIGTERM" : "SIGINT", options.grace_seconds);
  health->SetServingStatus(false);
  // Refuses new calls at once; those in flight may end until the deadline, then are
  // cancelled. Returns when every call is done.
  server->Shutdown(std::chrono::system_clock::now() +
                   std::chrono::duration_cast<std::chrono::system_clock::duration>(
                       std::chrono::duration<double>(options.grace_seconds)));
  return 0;
}

}  // namespace
}  // namespace calib

int main(int argc, char** argv) {
  absl::StatusOr<calib::ServerOptions> options =
      calib::ParseServerOptions(std::vector<std::string>(argv + 1, argv + argc));
  if (!options.ok()) {
    std::fprintf(stderr, "calibd: %s (see calibd --help)\n",
                 std::string(options.status().message()).c_str());
    return 2;
  }
  if (options->help) {
    std::fputs(calib::ServerUsage().c_str(), stdout);
    return 0;
  }
  return calib::Serve(*options);
}
