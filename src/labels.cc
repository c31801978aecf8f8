#include "src/labels.h"

#include <cstring>
#include <optional>
#include <string>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "src/tensor.h"

namespace calib {
namespace {

template <typename T>
T LoadAs(const char* data, size_t i) {
  T v;
  std::memcpy(&v, data + sizeof(T) * i, sizeof(T));
  return v;
}

// The label at element i as a double; integers up to 2^53 are exact, and anything
// larger is out of every valid range anyway.
double LoadLabel(v1::DType dtype, const char* data, size_t i) {
  switch (dtype) {
    case v1::DTYPE_INT32:
      return LoadAs<int32_t>(data, i);
    case v1::DTYPE_INT64:
      return static_cast<double>(LoadAs<int64_t>(data, i));
    case v1::DTYPE_UINT8:
      return LoadAs<uint8_t>(data, i);
    case v1::DTYPE_FLOAT64:
      return LoadAs<double>(data, i);
    default:
      return LoadAs<float>(data, i);
  }
}

// Decodes n labels of type T into out: kIgnoredLabel where a label equals `ignore`, the
// label where it is a whole number in [0, limit]. Returns the index of the first label
// that is neither (its out is unset), or n. Integers compare exactly; a float label
// equals `ignore` when its value does.
template <typename T>
uint64_t DecodeAs(const char* data, uint64_t n, int64_t limit,
                  std::optional<int64_t> ignore, int32_t* out) {
  for (uint64_t i = 0; i < n; ++i) {
    const T v = LoadAs<T>(data, i);
    if constexpr (std::is_integral_v<T>) {
      const int64_t w = static_cast<int64_t>(v);
      if (ignore.has_value() && w == *ignore) {
        out[i] = kIgnoredLabel;
      } else if (w >= 0 && w <= limit) {
        out[i] = static_cast<int32_t>(w);
      } else {
        return i;
      }
    } else {
      const double w = static_cast<double>(v);
      if (ignore.has_value() && w == static_cast<double>(*ignore)) {
        out[i] = kIgnoredLabel;
      } else if (w >= 0 && w <= static_cast<double>(limit) &&
                 w == static_cast<double>(static_cast<int64_t>(w))) {
        out[i] = static_cast<int32_t>(w);
      } else {
        return i;
      }
    }
  }
  return n;
}

std::string LabelText(v1::DType dtype, const char* data, size_t i) {
  if (dtype == v1::DTYPE_INT64) return absl::StrCat(LoadAs<int64_t>(data, i));
  return absl::StrCat(LoadLabel(dtype, data, i));
}

}  // namespace

absl::Status DecodeLabels(const Options& options, TensorView labels, uint64_t rows,
                          uint64_t first_row, std::vector<int32_t>* out,
                          uint64_t* good_rows) {
  *good_rows = 0;
  const v1::DType dtype = LabelsDType(labels.dtype);
  const bool sigmoid = options.sigmoid();
  const bool allowed =
      dtype == v1::DTYPE_INT32 || dtype == v1::DTYPE_INT64 || dtype == v1::DTYPE_UINT8 ||
      (sigmoid && (dtype == v1::DTYPE_FLOAT32 || dtype == v1::DTYPE_FLOAT64));
  if (!allowed) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch.labels.dtype is ", DTypeName(dtype), " (", static_cast<int>(labels.dtype),
        "); ",
        sigmoid ? "SIGMOID targets take int32, int64, uint8, float32 or float64"
                : "SOFTMAX labels are class indices: int32, int64 or uint8"));
  }
  const size_t size = DTypeSize(dtype);
  const uint64_t per_row = options.samples_per_row();
  if (labels.data.size() % size != 0 || labels.data.size() / size != rows * per_row) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch.labels holds ", labels.data.size(),
        " bytes = ", static_cast<double>(labels.data.size()) / size, " ",
        DTypeName(dtype), " values, but the logits hold ", rows, " rows, which need ",
        rows * per_row, sigmoid ? " targets (one per logit)" : " labels (one per row)"));
  }

  const char* data = labels.data.data();
  const uint64_t n = rows * per_row;
  out->resize(n);
  const std::optional<int64_t> ignore = options.ignore_index;
  const int64_t limit = sigmoid ? 1 : options.num_classes - 1;
  uint64_t i = 0;
  switch (dtype) {
    case v1::DTYPE_INT32:
      i = DecodeAs<int32_t>(data, n, limit, ignore, out->data());
      break;
    case v1::DTYPE_INT64:
      i = DecodeAs<int64_t>(data, n, limit, ignore, out->data());
      break;
    case v1::DTYPE_UINT8:
      i = DecodeAs<uint8_t>(data, n, limit, ignore, out->data());
      break;
    case v1::DTYPE_FLOAT64:
      i = DecodeAs<double>(data, n, limit, ignore, out->data());
      break;
    default:
      i = DecodeAs<float>(data, n, limit, ignore, out->data());
      break;
  }
  if (i == n) {
    *good_rows = rows;
    return absl::OkStatus();
  }
  const uint64_t row = i / per_row;
  *good_rows = row;
  std::string where = absl::StrCat("row ", first_row + row);
  if (per_row > 1) absl::StrAppend(&where, ", column ", i % per_row);
  return absl::InvalidArgumentError(absl::StrCat(
      "batch.labels at ", where, " is ", LabelText(dtype, data, i),
      sigmoid ? "; SIGMOID targets must be 0 or 1"
              : absl::StrCat("; labels must lie in [0, ", options.num_classes, ")"),
      ignore.has_value() ? absl::StrCat(" or equal ignore_index ", *ignore)
                         : std::string()));
}

}  // namespace calib
