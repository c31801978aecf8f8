// ReportToJson: the Report in the protobuf JSON mapping, with the proto's field names
// (preserve_proto_field_names), every non-optional scalar printed even when zero
// (always_print_primitive_fields), indented, and ending in one newline. Unset proto3
// `optional` fields (classwise_ece, smooth_ece) and unset messages (temperature_scaling
// ...) stay absent: protobuf 3.21 prints those only when set. 64-bit integers are
// strings, as the mapping says. Pure function, thread-safe.
#ifndef CALIB_CLIENT_REPORT_JSON_H_
#define CALIB_CLIENT_REPORT_JSON_H_

#include <string>

#include "absl/status/statusor.h"
#include "calib/v1/calibration.pb.h"

namespace calib {

absl::StatusOr<std::string> ReportToJson(const v1::Report& report);

}  // namespace calib

#endif  // CALIB_CLIENT_REPORT_JSON_H_
