#include "client/npy.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <string_view>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/read_only_file.h"
#include "src/status_macros.h"
#include "src/tensor.h"

namespace calib {
namespace {

// Tensors carry little-endian bytes, and the file's data is handed on as it is.
static_assert(std::endian::native == std::endian::little);

constexpr std::string_view kMagic = "\x93NUMPY";
// NumPy's own np.load refuses headers over 10,000 bytes; this bound only keeps a
// corrupt length from allocating gigabytes.
constexpr uint64_t kMaxHeaderBytes = uint64_t{1} << 20;
constexpr absl::string_view kSupported =
    "float32, float64, float16, bfloat16 (descr '<V2'), int32, int64, uint8, bool";

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<uint64_t> shape;
};

// The header is a Python dict literal, e.g.
//   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// This parser takes exactly that grammar: string keys; a string, True/False or a tuple
// of integers as values. Errors say what was expected where.
class HeaderParser {
 public:
  explicit HeaderParser(absl::string_view text) : text_(text) {}

  absl::StatusOr<NpyHeader> Parse() {
    NpyHeader header;
    bool seen_descr = false, seen_order = false, seen_shape = false;
    CALIB_RETURN_IF_ERROR(Expect('{'));
    while (!Consume('}')) {
      CALIB_ASSIGN_OR_RETURN(std::string key, String());
      CALIB_RETURN_IF_ERROR(Expect(':'));
      if (key == "descr") {
        SkipSpace();
        if (pos_ < text_.size() && text_[pos_] == '[') {
          return absl::InvalidArgumentError(
              "structured arrays (a list as descr) are not supported");
        }
        CALIB_ASSIGN_OR_RETURN(header.descr, String());
        seen_descr = true;
      } else if (key == "fortran_order") {
        CALIB_ASSIGN_OR_RETURN(header.fortran_order, Bool());
        seen_order = true;
      } else if (key == "shape") {
        CALIB_ASSIGN_OR_RETURN(header.shape, Shape());
        seen_shape = true;
      } else {
        return absl::InvalidArgumentError(absl::StrCat("unexpected key '", key, "'"));
      }
      if (!Consume(',')) {
        CALIB_RETURN_IF_ERROR(Expect('}'));
        break;
      }
    }
    if (!seen_descr || !seen_order || !seen_shape) {
      return absl::InvalidArgumentError(
          "it lacks one of 'descr', 'fortran_order' and 'shape'");
    }
    return header;
  }

 private:
  void SkipSpace() {
    while (pos_ < text_.size() && absl::ascii_isspace(text_[pos_])) ++pos_;
  }
  bool Consume(char c) {
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  absl::Status Expect(char c) {
    if (Consume(c)) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("expected '", std::string(1, c), "' at offset ", pos_));
  }
  absl::StatusOr<std::string> String() {
    SkipSpace();
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"')) {
      return absl::InvalidArgumentError(
          absl::StrCat("expected a quoted string at offset ", pos_));
    }
    const char quote = text_[pos_++];
    const size_t end = text_.find(quote, pos_);
    if (end == absl::string_view::npos) {
      return absl::InvalidArgumentError("unterminated string");
    }
    std::string out(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return out;
  }
  absl::string_view Word() {
    SkipSpace();
    const size_t start = pos_;
    while (pos_ < text_.size() && absl::ascii_isalnum(text_[pos_])) ++pos_;
    return text_.substr(start, pos_ - start);
  }
  absl::StatusOr<bool> Bool() {
    const absl::string_view word = Word();
    if (word == "True") return true;
    if (word == "False") return false;
    return absl::InvalidArgumentError(
        absl::StrCat("fortran_order is '", word, "', not True or False"));
  }
  absl::StatusOr<std::vector<uint64_t>> Shape() {
    std::vector<uint64_t> shape;
    CALIB_RETURN_IF_ERROR(Expect('('));
    while (!Consume(')')) {
      absl::string_view word = Word();
      // Files written by Python 2 spell long integers "3L".
      if (!word.empty() && (word.back() == 'L' || word.back() == 'l')) {
        word.remove_suffix(1);
      }
      uint64_t dim;
      if (!absl::SimpleAtoi(word, &dim)) {
        return absl::InvalidArgumentError(
            absl::StrCat("shape holds '", word, "', not a non-negative integer"));
      }
      shape.push_back(dim);
      if (!Consume(',')) {
        CALIB_RETURN_IF_ERROR(Expect(')'));
        break;
      }
    }
    return shape;
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

absl::StatusOr<v1::DType> DTypeFromDescr(const std::string& descr) {
  if (descr == "bfloat16") return v1::DTYPE_BFLOAT16;  // header written by hand
  if (descr == "|O" || descr == "O") {
    return absl::InvalidArgumentError(
        "object arrays (pickled Python objects) are not supported; save a numeric "
        "array");
  }
  char order = '=';
  absl::string_view code = descr;
  if (!code.empty() &&
      (code[0] == '<' || code[0] == '>' || code[0] == '|' || code[0] == '=')) {
    order = code[0];
    code.remove_prefix(1);
  }
  struct Known {
    absl::string_view code;
    v1::DType dtype;
  };
  // b1 is NumPy's bool: one byte holding 0 or 1, which is exactly a uint8 0/1 target.
  // V2 is how np.save writes ml_dtypes.bfloat16 (its dtype kind is void, since NumPy's
  // type codes cannot be extended); no other 2-byte void array holds model outputs.
  static constexpr Known kKnown[] = {
      {"f4", v1::DTYPE_FLOAT32}, {"f8", v1::DTYPE_FLOAT64},  {"f2", v1::DTYPE_FLOAT16},
      {"i4", v1::DTYPE_INT32},   {"i8", v1::DTYPE_INT64},    {"u1", v1::DTYPE_UINT8},
      {"b1", v1::DTYPE_UINT8},   {"V2", v1::DTYPE_BFLOAT16},
  };
  for (const Known& known : kKnown) {
    if (code != known.code) continue;
    if (order == '>' && DTypeSize(known.dtype) > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("big-endian arrays (descr '", descr,
                       "') are not supported; save a.astype(a.dtype.newbyteorder('<'))"));
    }
    return known.dtype;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("dtype '", descr, "' is not supported; supported: ", kSupported));
}

uint32_t ReadLittleEndian(absl::string_view bytes) {
  uint32_t value = 0;
  for (size_t i = bytes.size(); i-- > 0;) {
    value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  }
  return value;
}

// A .npy's data, left in the file until Read copies a range of it (pread) into the
// engine's or the wire's buffer. Reading a mapping of the same file instead was
// measured up to five times slower, depending on how the page cache held the file.
class NpyBytes : public ArrayBytes {
 public:
  NpyBytes(std::unique_ptr<ReadOnlyFile> file, uint64_t data_start)
      : file_(std::move(file)), data_start_(data_start) {}

  absl::Status Read(uint64_t offset, uint64_t size, char* dst) const override {
    return file_->Read(data_start_ + offset, size, dst);
  }

 private:
  const std::unique_ptr<ReadOnlyFile> file_;
  const uint64_t data_start_;
};

// The length of the header dict, from the first (up to) 12 bytes of a file of
// `file_size` bytes; *prefix is where the dict starts (after the magic, the version and
// the length itself).
absl::StatusOr<uint64_t> HeaderLength(std::string_view first, uint64_t file_size,
                                      size_t* prefix) {
  if (first.size() < 10 || first.substr(0, kMagic.size()) != kMagic) {
    return absl::InvalidArgumentError("not a .npy file (no \\x93NUMPY magic)");
  }
  const int major = static_cast<unsigned char>(first[6]);
  size_t length_bytes;
  if (major == 1) {
    length_bytes = 2;
  } else if (major == 2 || major == 3) {
    length_bytes = 4;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(".npy format version ", major, " is not supported (1, 2 or 3)"));
  }
  *prefix = 8 + length_bytes;
  if (first.size() < *prefix) return absl::InvalidArgumentError("truncated .npy header");
  const uint64_t header_length =
      ReadLittleEndian(absl::string_view(first.data() + 8, length_bytes));
  if (header_length > kMaxHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat("a .npy header of ", header_length,
                                                   " bytes; at most ", kMaxHeaderBytes,
                                                   " are read"));
  }
  if (file_size - *prefix < header_length) {
    return absl::InvalidArgumentError("truncated .npy header");
  }
  return header_length;
}

// The array that `header` describes, without its bytes, of which the file holds
// `data_bytes`.
absl::StatusOr<Array> ParseHeader(std::string_view header, uint64_t data_bytes) {
  HeaderParser parser(absl::string_view(header.data(), header.size()));
  absl::StatusOr<NpyHeader> parsed = parser.Parse();
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed .npy header: ", parsed.status().message()));
  }
  Array array;
  CALIB_ASSIGN_OR_RETURN(array.dtype, DTypeFromDescr(parsed->descr));
  array.shape = parsed->shape;
  // With one axis or none, Fortran and C order are the same bytes.
  if (parsed->fortran_order && array.shape.size() > 1) {
    return absl::InvalidArgumentError(
        "Fortran-order arrays are not supported; save np.ascontiguousarray(a)");
  }
  uint64_t bytes = DTypeSize(array.dtype);
  for (uint64_t dim : array.shape) {
    if (__builtin_mul_overflow(bytes, dim, &bytes)) {
      return absl::InvalidArgumentError(
          absl::StrCat("shape ", ShapeToString(array.shape), " is too large"));
    }
  }
  if (data_bytes != bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("holds ", data_bytes, " bytes of data, but shape ",
                     ShapeToString(array.shape), " of ", DTypeName(array.dtype),
                     " needs ", bytes, data_bytes < bytes ? " (truncated?)" : ""));
  }
  return array;
}

}  // namespace

absl::StatusOr<Array> ReadNpy(const std::string& path) {
  CALIB_ASSIGN_OR_RETURN(std::unique_ptr<ReadOnlyFile> file, ReadOnlyFile::Open(path));
  const auto with_path = [&](const absl::Status& status) {
    return absl::Status(status.code(), absl::StrCat(path, ": ", status.message()));
  };
  std::string first(std::min<uint64_t>(file->size(), 12), '\0');
  CALIB_RETURN_IF_ERROR(file->Read(0, first.size(), first.data()));
  size_t prefix = 0;
  const absl::StatusOr<uint64_t> header_length =
      HeaderLength(first, file->size(), &prefix);
  if (!header_length.ok()) return with_path(header_length.status());
  std::string header(*header_length, '\0');
  CALIB_RETURN_IF_ERROR(file->Read(prefix, header.size(), header.data()));
  const uint64_t data_start = prefix + *header_length;
  absl::StatusOr<Array> array = ParseHeader(header, file->size() - data_start);
  if (!array.ok()) return with_path(array.status());
  array->bytes = std::make_shared<NpyBytes>(std::move(file), data_start);
  return array;
}

}  // namespace calib
