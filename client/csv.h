// ReadCsv reads a .csv of numbers: one row per line, fields separated by commas, an
// optional first line holding a non-number (a header) skipped, blank lines skipped.
// Every row must have the same number of fields. One field per row gives an array of
// shape [N], K fields shape [N, K]. Thread-safe: it touches nothing but the file.
#ifndef CALIB_CLIENT_CSV_H_
#define CALIB_CLIENT_CSV_H_

#include <string>

#include "absl/status/statusor.h"
#include "client/array.h"

namespace calib {

enum class CsvNumbers {
  kFloat64,          // logits: always float64
  kInt64IfIntegral,  // labels: int64 when every value is a whole number, else float64
};

// INVALID_ARGUMENT naming the path, line and field of the first thing that is not a
// number, or of a row whose field count differs from the first row's; also for a file
// with no rows of numbers.
absl::StatusOr<Array> ReadCsv(const std::string& path, CsvNumbers numbers);

}  // namespace calib

#endif  // CALIB_CLIENT_CSV_H_
