// LoadEvalInput reads the logits and labels files of one evaluation (.npy or .csv, by
// extension) and checks that they fit together: num_classes is the logits' last axis
// (1 for a 1-D array), every other axis counts rows, and the labels hold one value per
// row, or one per logit for a multi-label SIGMOID model. Thread-safe.
#ifndef CALIB_CLIENT_INPUT_FILES_H_
#define CALIB_CLIENT_INPUT_FILES_H_

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "calib/v1/calibration.pb.h"
#include "client/array.h"
#include "src/tensor.h"

namespace calib {

struct EvalInput {
  Array logits;  // rows * num_classes values
  Array labels;  // rows * labels_per_row values
  uint32_t num_classes = 0;
  uint64_t rows = 0;
  uint32_t labels_per_row = 0;  // 1, or num_classes for multi-label SIGMOID

  uint64_t logits_row_bytes() const { return num_classes * DTypeSize(logits.dtype); }
  uint64_t labels_row_bytes() const { return labels_per_row * DTypeSize(labels.dtype); }

  // Copies rows [row, row + count) to `logits` (count * logits_row_bytes()) and to
  // `labels` (count * labels_row_bytes()).
  absl::Status ReadRows(uint64_t row, uint64_t count, char* logits_out,
                        char* labels_out) const;
};

// Rows per chunk (a batch message, a read): as many whole rows as fit in `chunk_bytes`
// of logits and labels, and at least one.
inline uint64_t RowsPerChunk(const EvalInput& input, uint64_t chunk_bytes) {
  return std::max<uint64_t>(
      1, chunk_bytes / (input.logits_row_bytes() + input.labels_row_bytes()));
}

// Reads a .npy (its header; the data stays in the file) or a .csv; .csv logits are
// float64, .csv labels int64 when whole numbers, else float64.
absl::StatusOr<Array> ReadArrayFile(const std::string& path, bool labels);

// `activation` decides only how many labels a row has (UNSPECIFIED: SOFTMAX when the
// logits have more than one class). INVALID_ARGUMENT naming both files and shapes when
// they do not fit; the values themselves are the engine's to check.
absl::StatusOr<EvalInput> LoadEvalInput(const std::string& logits_path,
                                        const std::string& labels_path,
                                        v1::Activation activation);

}  // namespace calib

#endif  // CALIB_CLIENT_INPUT_FILES_H_
