// Element types of a Tensor: sizes, and the widening of float16 and bfloat16 to float.
// Pure functions, thread-safe.
#ifndef CALIB_SRC_TENSOR_H_
#define CALIB_SRC_TENSOR_H_

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "calib/v1/calibration.pb.h"

namespace calib {

// Bytes per element; 0 for DTYPE_UNSPECIFIED or a value outside the enum. Callers
// resolve UNSPECIFIED first with LogitsDType / LabelsDType.
size_t DTypeSize(v1::DType dtype);
// "float32", "int64", ...: for messages.
const char* DTypeName(v1::DType dtype);
bool IsFloatDType(v1::DType dtype);
inline v1::DType LogitsDType(v1::DType d) {
  return d == v1::DTYPE_UNSPECIFIED ? v1::DTYPE_FLOAT32 : d;
}
inline v1::DType LabelsDType(v1::DType d) {
  return d == v1::DTYPE_UNSPECIFIED ? v1::DTYPE_INT64 : d;
}

// IEEE 754 binary16 to float, exactly (subnormals, infinities and NaN included).
inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24, exact in float.
    const float mag = static_cast<float>(mant) * 0x1p-24f;
    return std::bit_cast<float>(std::bit_cast<uint32_t>(mag) | sign);
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

inline float BFloat16ToFloat(uint16_t b) {
  return std::bit_cast<float>(static_cast<uint32_t>(b) << 16);
}

// Reads element i of little-endian data of a floating dtype as double.
inline double LoadFloat(v1::DType dtype, const char* data, size_t i) {
  switch (dtype) {
    case v1::DTYPE_FLOAT64: {
      double v;
      std::memcpy(&v, data + 8 * i, 8);
      return v;
    }
    case v1::DTYPE_FLOAT16: {
      uint16_t v;
      std::memcpy(&v, data + 2 * i, 2);
      return HalfToFloat(v);
    }
    case v1::DTYPE_BFLOAT16: {
      uint16_t v;
      std::memcpy(&v, data + 2 * i, 2);
      return BFloat16ToFloat(v);
    }
    default: {
      float v;
      std::memcpy(&v, data + 4 * i, 4);
      return v;
    }
  }
}

}  // namespace calib

#endif  // CALIB_SRC_TENSOR_H_
