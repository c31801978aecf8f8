// Label decoding: a batch's labels Tensor (any integer dtype, or float for SIGMOID)
// checked and turned into int32 values, one per sample slot: SOFTMAX a class index per
// row, SIGMOID a 0/1 target per (row, label) element, kIgnoredLabel for ignore_index.
// Pure functions, thread-safe.
#ifndef CALIB_SRC_LABELS_H_
#define CALIB_SRC_LABELS_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "src/evaluator.h"
#include "src/options.h"

namespace calib {

inline constexpr int32_t kIgnoredLabel = -1;

// Decodes the labels of `rows` rows whose first row has the global index `first_row`.
// On a bad value returns INVALID_ARGUMENT naming its global row and value and sets
// *good_rows to the number of leading rows that decoded fine (all of them on success).
// Errors about the tensor as a whole (dtype, size) set *good_rows to 0.
absl::Status DecodeLabels(const Options& options, TensorView labels, uint64_t rows,
                          uint64_t first_row, std::vector<int32_t>* out,
                          uint64_t* good_rows);

}  // namespace calib

#endif  // CALIB_SRC_LABELS_H_
