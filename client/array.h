// Array: an n-dimensional array read from a file, as the engine takes it: a dtype, a
// shape and the little-endian row-major bytes. The bytes stay where the reader found
// them, in memory (numbers parsed from a .csv) or in the .npy file itself, until Read
// copies a range of them out; every copy of the Array keeps them (and the file) alive.
// Immutable once built; safe to share between threads.
#ifndef CALIB_CLIENT_ARRAY_H_
#define CALIB_CLIENT_ARRAY_H_

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_join.h"
#include "calib/v1/calibration.pb.h"

namespace calib {

// Where an Array's bytes are. Implementations are thread-safe.
class ArrayBytes {
 public:
  virtual ~ArrayBytes() = default;
  // Copies bytes [offset, offset + size) to dst; the range lies within the array.
  virtual absl::Status Read(uint64_t offset, uint64_t size, char* dst) const = 0;
};

struct Array {
  v1::DType dtype = v1::DTYPE_UNSPECIFIED;
  std::vector<uint64_t> shape;  // empty for a 0-d array
  std::shared_ptr<const ArrayBytes> bytes;

  uint64_t num_elements() const {
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;
    return n;
  }

  absl::Status Read(uint64_t offset, uint64_t size, char* dst) const {
    return size == 0 ? absl::OkStatus() : bytes->Read(offset, size, dst);
  }
};

// An Array that owns `values`, in memory.
template <typename T>
Array MemoryArray(v1::DType dtype, std::vector<uint64_t> shape, std::vector<T> values) {
  class Memory : public ArrayBytes {
   public:
    explicit Memory(std::vector<T> values) : values_(std::move(values)) {}
    absl::Status Read(uint64_t offset, uint64_t size, char* dst) const override {
      std::memcpy(dst, reinterpret_cast<const char*>(values_.data()) + offset, size);
      return absl::OkStatus();
    }

   private:
    const std::vector<T> values_;
  };
  return {dtype, std::move(shape), std::make_shared<Memory>(std::move(values))};
}

// "[4, 3]", as NumPy prints a shape (without its trailing comma for one axis).
inline std::string ShapeToString(const std::vector<uint64_t>& shape) {
  return "[" + absl::StrJoin(shape, ", ") + "]";
}

}  // namespace calib

#endif  // CALIB_CLIENT_ARRAY_H_
