// Array: an n-dimensional array read from a file, as the engine takes it: a dtype, a
// shape and the little-endian row-major bytes. The bytes are borrowed from `storage`
// (a mapped .npy file, or numbers parsed from a .csv), which every copy of the Array
// keeps alive. Immutable once built; safe to share between threads.
#ifndef CALIB_CLIENT_ARRAY_H_
#define CALIB_CLIENT_ARRAY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_join.h"
#include "calib/v1/calibration.pb.h"

namespace calib {

struct Array {
  v1::DType dtype = v1::DTYPE_UNSPECIFIED;
  std::vector<uint64_t> shape;  // empty for a 0-d array
  std::string_view data;
  std::shared_ptr<const void> storage;

  uint64_t num_elements() const {
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;
    return n;
  }
};

// "[4, 3]", as NumPy prints a shape (without its trailing comma for one axis).
inline std::string ShapeToString(const std::vector<uint64_t>& shape) {
  return "[" + absl::StrJoin(shape, ", ") + "]";
}

}  // namespace calib

#endif  // CALIB_CLIENT_ARRAY_H_
