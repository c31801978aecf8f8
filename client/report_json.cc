#include "client/report_json.h"

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"

namespace calib {

absl::StatusOr<std::string> ReportToJson(const v1::Report& report) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  options.add_whitespace = true;
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(report, &json, options);
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot write the report as JSON: ", status.ToString()));
  }
  // add_whitespace already ends the text with a newline in 3.21; not every version does.
  if (json.empty() || json.back() != '\n') json.push_back('\n');
  return json;
}

}  // namespace calib
