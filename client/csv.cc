#include "client/csv.h"

#include <cmath>
#include <optional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/read_only_file.h"
#include "src/status_macros.h"

namespace calib {
namespace {

// A field's value, kept both ways until the whole file shows which dtype fits.
struct Number {
  double real;
  std::optional<int64_t> integer;
};

std::optional<Number> ParseNumber(absl::string_view field) {
  Number n;
  int64_t i;
  if (absl::SimpleAtoi(field, &i)) {
    n.real = static_cast<double>(i);
    n.integer = i;
    return n;
  }
  if (!absl::SimpleAtod(field, &n.real)) return std::nullopt;
  // "3.0" is a class index as much as "3" is; 2^63 itself is out of int64's range.
  if (std::isfinite(n.real) && n.real == std::trunc(n.real) &&
      std::fabs(n.real) < 0x1p63) {
    n.integer = static_cast<int64_t>(n.real);
  }
  return n;
}

}  // namespace

absl::StatusOr<Array> ReadCsv(const std::string& path, CsvNumbers numbers) {
  CALIB_ASSIGN_OR_RETURN(const std::unique_ptr<ReadOnlyFile> file,
                         ReadOnlyFile::Open(path));
  CALIB_ASSIGN_OR_RETURN(const std::string text, file->ReadAll());
  std::vector<double> reals;
  std::vector<int64_t> integers;
  bool all_integers = numbers == CsvNumbers::kInt64IfIntegral;
  size_t fields_per_row = 0;
  size_t first_row_line = 0;
  size_t rows = 0;
  size_t line_number = 0;
  std::vector<std::optional<Number>> parsed;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);  // also the '\r' of CRLF files
    if (line.empty()) continue;
    parsed.clear();
    bool has_non_number = false;
    for (absl::string_view field : absl::StrSplit(line, ',')) {
      parsed.push_back(ParseNumber(absl::StripAsciiWhitespace(field)));
      has_non_number |= !parsed.back().has_value();
    }
    if (has_non_number) {
      if (rows == 0 && first_row_line == 0) {
        first_row_line = line_number;  // the header; rows start after it
        continue;
      }
      size_t column = 0;
      absl::string_view bad;
      for (absl::string_view field : absl::StrSplit(line, ',')) {
        if (!parsed[column].has_value()) {
          bad = absl::StripAsciiWhitespace(field);
          break;
        }
        ++column;
      }
      return absl::InvalidArgumentError(absl::StrCat(path, ": line ", line_number,
                                                     ", field ", column + 1, ": '", bad,
                                                     "' is not a number"));
    }
    if (rows == 0) {
      fields_per_row = parsed.size();
      first_row_line = line_number;
    } else if (parsed.size() != fields_per_row) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": line ", line_number, " has ", parsed.size(),
                       " fields, but line ", first_row_line, " has ", fields_per_row));
    }
    for (const std::optional<Number>& n : parsed) {
      reals.push_back(n->real);
      if (all_integers) {
        if (n->integer) {
          integers.push_back(*n->integer);
        } else {
          all_integers = false;
          integers = {};
        }
      }
    }
    ++rows;
  }
  if (rows == 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": holds no rows of numbers"));
  }
  std::vector<uint64_t> shape = {rows};
  if (fields_per_row > 1) shape.push_back(fields_per_row);
  if (all_integers) return MemoryArray(v1::DTYPE_INT64, shape, std::move(integers));
  return MemoryArray(v1::DTYPE_FLOAT64, shape, std::move(reals));
}

}  // namespace calib
