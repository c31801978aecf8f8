// CalibrationServiceImpl: calib.v1.CalibrationService on gRPC's callback API.
// gRPC threads only move messages: each config, batch and end of stream is handed as a
// task to the one oneTBB arena the server computes in, and that task ends the call or
// asks for the next message. Each call's tasks run under a task_group_context of its
// own, which OnCancel (client gone, deadline passed) cancels: the engine's work stops
// and the call's Evaluator, and the memory it reserved, are freed at once. An
// evaluation is admitted by `admission` at its config. A call that goes wrong ends
// alone; others go on. Thread-safe. `arena`, `admission` and `metrics` must outlive the
// grpc::Server the service is registered with.
#ifndef CALIB_SERVER_CALIBRATION_SERVICE_H_
#define CALIB_SERVER_CALIBRATION_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>

#include "calib/v1/calibration.grpc.pb.h"
#include "oneapi/tbb/task_arena.h"
#include "server/admission.h"
#include "server/limited_evaluator.h"
#include "server/server_metrics.h"

namespace calib {

// The service with Evaluate's request and response as raw bytes, which the service
// parses itself: gRPC 1.51 ends a unary call whose request does not parse with
// UNIMPLEMENTED and no message, before the service sees it.
using CalibrationCallbackService = v1::CalibrationService::WithRawCallbackMethod_Evaluate<
    v1::CalibrationService::CallbackService>;

class CalibrationServiceImpl final : public CalibrationCallbackService {
 public:
  // `max_message_bytes` is only reported: the ServerBuilder enforces it.
  CalibrationServiceImpl(const EvaluationLimits& limits, uint64_t max_message_bytes,
                         tbb::task_arena* arena, Admission* admission,
                         ServerMetrics* metrics)
      : limits_(limits),
        max_message_bytes_(max_message_bytes),
        arena_(arena),
        admission_(admission),
        metrics_(metrics) {}

  // A request that does not parse as an EvaluateRequest ends INVALID_ARGUMENT.
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
  const EvaluationLimits limits_;
  const uint64_t max_message_bytes_;
  tbb::task_arena* const arena_;
  Admission* const admission_;
  ServerMetrics* const metrics_;
};

}  // namespace calib

#endif  // CALIB_SERVER_CALIBRATION_SERVICE_H_
