#include "client/input_files.h"

#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/csv.h"
#include "client/npy.h"
#include "src/status_macros.h"

namespace calib {

absl::Status EvalInput::ReadRows(uint64_t row, uint64_t count, char* logits_out,
                                 char* labels_out) const {
  CALIB_RETURN_IF_ERROR(
      logits.Read(row * logits_row_bytes(), count * logits_row_bytes(), logits_out));
  return labels.Read(row * labels_row_bytes(), count * labels_row_bytes(), labels_out);
}

absl::StatusOr<Array> ReadArrayFile(const std::string& path, bool labels) {
  const std::string lower = absl::AsciiStrToLower(path);
  if (absl::EndsWith(lower, ".npy")) return ReadNpy(path);
  if (absl::EndsWith(lower, ".csv")) {
    return ReadCsv(path, labels ? CsvNumbers::kInt64IfIntegral : CsvNumbers::kFloat64);
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": unknown file type; expected a .npy or .csv file"));
}

absl::StatusOr<EvalInput> LoadEvalInput(const std::string& logits_path,
                                        const std::string& labels_path,
                                        v1::Activation activation) {
  EvalInput in;
  CALIB_ASSIGN_OR_RETURN(in.logits, ReadArrayFile(logits_path, /*labels=*/false));
  CALIB_ASSIGN_OR_RETURN(in.labels, ReadArrayFile(labels_path, /*labels=*/true));
  const std::vector<uint64_t>& shape = in.logits.shape;
  const std::string logits_shape = ShapeToString(shape);
  if (shape.empty() || shape.size() > 3) {
    return absl::InvalidArgumentError(
        absl::StrCat(logits_path, ": logits of shape ", logits_shape,
                     "; expected [N] (binary), [N, C] or [B, S, C]"));
  }
  const uint64_t classes = shape.size() == 1 ? 1 : shape.back();
  if (classes == 0 || classes > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(logits_path, ": logits of shape ",
                                                   logits_shape, " have ", classes,
                                                   " classes on the last axis"));
  }
  in.num_classes = static_cast<uint32_t>(classes);
  in.rows = in.logits.num_elements() / classes;
  const bool multi_label = activation == v1::ACTIVATION_SIGMOID && classes > 1;
  in.labels_per_row = multi_label ? in.num_classes : 1;
  const uint64_t expected = in.rows * in.labels_per_row;
  const uint64_t got = in.labels.num_elements();
  if (got != expected) {
    std::string why =
        multi_label ? absl::StrCat(in.rows, " rows x ", classes, " targets (multi-label)")
                    : absl::StrCat("one per row of ", classes, " logits");
    // One-hot labels are the usual cause of this with a softmax model.
    const bool one_hot = !multi_label && classes > 1 && got == in.rows * classes;
    return absl::InvalidArgumentError(absl::StrCat(
        labels_path, " holds ", got, " labels (shape ", ShapeToString(in.labels.shape),
        ") but ", logits_path, " has logits of shape ", logits_shape, ": expected ",
        expected, " labels, ", why,
        one_hot ? "; one-hot labels? pass class indices (labels.argmax(-1))" : ""));
  }
  return in;
}

}  // namespace calib
