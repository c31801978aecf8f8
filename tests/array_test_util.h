// Helpers for the tests of the client's array readers: ArrayBytesOf reads all of an
// Array's bytes at once; NpyBytes and Dict build a .npy file's contents as NumPy writes
// them. Thread-safe (Array::Read is).
#ifndef CALIB_TESTS_ARRAY_TEST_UTIL_H_
#define CALIB_TESTS_ARRAY_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "client/array.h"
#include "src/tensor.h"

namespace calib {

inline std::string ArrayBytesOf(const Array& array) {
  std::string bytes(array.num_elements() * DTypeSize(array.dtype), '\0');
  const absl::Status status = array.Read(0, bytes.size(), bytes.data());
  EXPECT_TRUE(status.ok()) << status;
  return bytes;
}

// A .npy file as NumPy's format.py writes it: magic, version, header length, the
// header dict padded with spaces to a multiple of 64 bytes and ended by '\n', the data.
inline std::string NpyBytes(int major, const std::string& dict, const std::string& data) {
  const size_t prefix = major == 1 ? 10 : 12;
  std::string header = dict;
  header.append((64 - (prefix + header.size() + 1) % 64) % 64, ' ');
  header.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(static_cast<char>(major));
  out.push_back('\0');
  const uint32_t length = static_cast<uint32_t>(header.size());
  for (size_t i = 0; i < (major == 1 ? 2u : 4u); ++i) {
    out.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
  }
  return out + header + data;
}

inline std::string Dict(const std::string& descr, const std::string& shape,
                        bool fortran = false) {
  return "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
         ", 'shape': " + shape + ", }";
}

}  // namespace calib

#endif  // CALIB_TESTS_ARRAY_TEST_UTIL_H_
