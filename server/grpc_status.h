// The one conversion from the engine's absl::Status to the grpc::Status a call ends
// with. The numeric codes of the two enums are the same in gRPC 1.51, so the code is
// carried over as is and the message verbatim. Pure function, thread-safe.
#ifndef CALIB_SERVER_GRPC_STATUS_H_
#define CALIB_SERVER_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace calib {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace calib

#endif  // CALIB_SERVER_GRPC_STATUS_H_
