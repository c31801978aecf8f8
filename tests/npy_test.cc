#include "client/npy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "src/tensor.h"
#include "tests/array_test_util.h"

namespace calib {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

template <typename T>
std::string Bytes(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()),
                     values.size() * sizeof(T));
}

std::string WriteFile(const std::string& name, const std::string& contents) {
  const std::string path = ::testing::TempDir() + "/npy_test_" + name;
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

absl::StatusOr<Array> ReadBytes(const std::string& name, const std::string& contents) {
  return ReadNpy(WriteFile(name, contents));
}

TEST(NpyTest, ReadsFloat32MatrixWithoutChangingTheBytes) {
  const std::vector<float> values = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, -7.0f};
  auto array = ReadBytes("f4.npy", NpyBytes(1, Dict("<f4", "(2, 3)"), Bytes(values)));
  ASSERT_TRUE(array.ok()) << array.status();
  EXPECT_EQ(array->dtype, v1::DTYPE_FLOAT32);
  EXPECT_THAT(array->shape, ElementsAre(2, 3));
  EXPECT_EQ(array->num_elements(), 6u);
  EXPECT_EQ(ArrayBytesOf(*array), Bytes(values));
}

TEST(NpyTest, ReadsEveryDType) {
  struct Case {
    std::string descr;
    v1::DType dtype;
    std::string data;
  };
  const std::vector<Case> cases = {
      {"<f8", v1::DTYPE_FLOAT64, Bytes(std::vector<double>{0.25, -1e300})},
      {"<f2", v1::DTYPE_FLOAT16, Bytes(std::vector<uint16_t>{0x3c00, 0xc000})},
      {"<i4", v1::DTYPE_INT32, Bytes(std::vector<int32_t>{7, -100})},
      {"<i8", v1::DTYPE_INT64, Bytes(std::vector<int64_t>{int64_t{1} << 40, -100})},
      {"|u1", v1::DTYPE_UINT8, Bytes(std::vector<uint8_t>{0, 255})},
      {"|b1", v1::DTYPE_UINT8, Bytes(std::vector<uint8_t>{1, 0})},
      {"<V2", v1::DTYPE_BFLOAT16, Bytes(std::vector<uint16_t>{0x3f80, 0xc040})},
      {"|V2", v1::DTYPE_BFLOAT16, Bytes(std::vector<uint16_t>{0x3f80, 0xc040})},
  };
  for (const Case& c : cases) {
    auto array = ReadBytes("dtype.npy", NpyBytes(1, Dict(c.descr, "(2,)"), c.data));
    ASSERT_TRUE(array.ok()) << c.descr << ": " << array.status();
    EXPECT_EQ(array->dtype, c.dtype) << c.descr;
    EXPECT_THAT(array->shape, ElementsAre(2)) << c.descr;
    EXPECT_EQ(ArrayBytesOf(*array), c.data) << c.descr;
  }
}

TEST(NpyTest, Float16AndBFloat16ValuesWidenAsWritten) {
  auto half = ReadBytes("f2.npy", NpyBytes(1, Dict("<f2", "(2,)"),
                                           Bytes(std::vector<uint16_t>{0x3c00, 0xc000})));
  ASSERT_TRUE(half.ok()) << half.status();
  const std::string half_bytes = ArrayBytesOf(*half);
  EXPECT_EQ(LoadFloat(half->dtype, half_bytes.data(), 0), 1.0);
  EXPECT_EQ(LoadFloat(half->dtype, half_bytes.data(), 1), -2.0);
  // 0x3f80 and 0xc040 are the top halves of float32 1.0 and -3.0.
  auto bf16 = ReadBytes("v2.npy", NpyBytes(1, Dict("<V2", "(2,)"),
                                           Bytes(std::vector<uint16_t>{0x3f80, 0xc040})));
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  const std::string bf16_bytes = ArrayBytesOf(*bf16);
  EXPECT_EQ(LoadFloat(bf16->dtype, bf16_bytes.data(), 0), 1.0);
  EXPECT_EQ(LoadFloat(bf16->dtype, bf16_bytes.data(), 1), -3.0);
}

TEST(NpyTest, ReadsVersion2And3Headers) {
  const std::vector<int64_t> values = {3, 1, 4, 1};
  for (int major : {2, 3}) {
    auto array = ReadBytes("v" + std::to_string(major) + ".npy",
                           NpyBytes(major, Dict("<i8", "(2, 2)"), Bytes(values)));
    ASSERT_TRUE(array.ok()) << major << ": " << array.status();
    EXPECT_EQ(array->dtype, v1::DTYPE_INT64);
    EXPECT_THAT(array->shape, ElementsAre(2, 2));
    EXPECT_EQ(ArrayBytesOf(*array), Bytes(values));
  }
}

TEST(NpyTest, ReadsShapesOfEveryRank) {
  const std::vector<float> six(6, 0.5f);
  auto three = ReadBytes("bsc.npy", NpyBytes(1, Dict("<f4", "(1, 2, 3)"), Bytes(six)));
  ASSERT_TRUE(three.ok()) << three.status();
  EXPECT_THAT(three->shape, ElementsAre(1, 2, 3));
  auto scalar = ReadBytes(
      "scalar.npy", NpyBytes(1, Dict("<f4", "()"), Bytes(std::vector<float>{2.0f})));
  ASSERT_TRUE(scalar.ok()) << scalar.status();
  EXPECT_TRUE(scalar->shape.empty());
  EXPECT_EQ(scalar->num_elements(), 1u);
  auto empty = ReadBytes("empty.npy", NpyBytes(1, Dict("<f4", "(0, 5)"), ""));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_THAT(empty->shape, ElementsAre(0, 5));
  EXPECT_EQ(empty->num_elements(), 0u);
}

TEST(NpyTest, AcceptsHeaderVariations) {
  const std::string data = Bytes(std::vector<float>{1, 2, 3, 4, 5, 6});
  // Key order, double quotes, no trailing comma, Python 2 long integers.
  for (const std::string& dict :
       {std::string("{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}"),
        std::string("{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2,3)}"),
        std::string("{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }")}) {
    auto array = ReadBytes("variant.npy", NpyBytes(1, dict, data));
    ASSERT_TRUE(array.ok()) << dict << ": " << array.status();
    EXPECT_THAT(array->shape, ElementsAre(2, 3)) << dict;
  }
  // With one axis Fortran and C order are the same bytes.
  auto fortran_1d = ReadBytes("f1d.npy", NpyBytes(1, Dict("<f4", "(6,)", true), data));
  ASSERT_TRUE(fortran_1d.ok()) << fortran_1d.status();
}

void ExpectRejected(const std::string& name, const std::string& contents,
                    const std::string& why) {
  auto array = ReadBytes(name, contents);
  ASSERT_FALSE(array.ok()) << name;
  EXPECT_EQ(array.status().code(), absl::StatusCode::kInvalidArgument) << name;
  EXPECT_THAT(std::string(array.status().message()), HasSubstr(name)) << name;
  EXPECT_THAT(std::string(array.status().message()), HasSubstr(why)) << name;
}

TEST(NpyTest, RejectsWhatItCannotPassOnAsIs) {
  const std::string f8 = Bytes(std::vector<double>{1, 2, 3, 4, 5, 6});
  ExpectRejected("big.npy", NpyBytes(1, Dict(">f8", "(6,)"), f8), "big-endian");
  ExpectRejected("fortran.npy", NpyBytes(1, Dict("<f8", "(2, 3)", true), f8),
                 "Fortran-order");
  ExpectRejected("object.npy", NpyBytes(1, Dict("|O", "(6,)"), f8), "object arrays");
  ExpectRejected("struct.npy",
                 NpyBytes(1,
                          "{'descr': [('a', '<f4'), ('b', '<f4')], 'fortran_order': "
                          "False, 'shape': (6,), }",
                          f8),
                 "structured arrays");
  ExpectRejected("int16.npy", NpyBytes(1, Dict("<i2", "(24,)"), f8),
                 "dtype '<i2' is not supported");
  ExpectRejected("void4.npy", NpyBytes(1, Dict("<V4", "(12,)"), f8),
                 "dtype '<V4' is not supported");
}

TEST(NpyTest, RejectsBrokenFiles) {
  const std::string f8 = Bytes(std::vector<double>{1, 2, 3, 4, 5, 6});
  ExpectRejected("short.npy", NpyBytes(1, Dict("<f8", "(2, 3)"), f8.substr(0, 40)),
                 "holds 40 bytes of data, but shape [2, 3] of float64 needs 48");
  ExpectRejected("long.npy", NpyBytes(1, Dict("<f8", "(5,)"), f8),
                 "holds 48 bytes of data, but shape [5] of float64 needs 40");
  ExpectRejected("magic.npy", "PK\x03\x04 not numpy at all", "not a .npy file");
  ExpectRejected("empty.npy", "", "not a .npy file");
  std::string v4 = NpyBytes(2, Dict("<f8", "(6,)"), f8);
  v4[6] = 4;
  ExpectRejected("v4.npy", v4, "format version 4");
  std::string cut = NpyBytes(1, Dict("<f8", "(6,)"), f8);
  ExpectRejected("cut.npy", cut.substr(0, 30), "truncated .npy header");
  // A 2 GiB header length in a version 2 file: refused before anything is allocated.
  std::string huge = NpyBytes(2, Dict("<f8", "(6,)"), f8);
  huge[11] = static_cast<char>(0x80);
  ExpectRejected("huge_header.npy", huge,
                 "a .npy header of 2147483764 bytes; at most 1048576");
  ExpectRejected("nokey.npy", NpyBytes(1, "{'descr': '<f8', 'shape': (6,), }", f8),
                 "lacks one of");
  ExpectRejected("badshape.npy", NpyBytes(1, Dict("<f8", "(-6,)"), f8), "shape holds");
  ExpectRejected("overflow.npy", NpyBytes(1, Dict("<f8", "(4294967296, 4294967296)"), f8),
                 "too large");
}

TEST(NpyTest, NamesAMissingFile) {
  const std::string path = ::testing::TempDir() + "/npy_test_does_not_exist.npy";
  auto array = ReadNpy(path);
  ASSERT_FALSE(array.ok());
  EXPECT_EQ(array.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(array.status().message()), HasSubstr(path));
}

TEST(NpyTest, DataOutlivesTheFileAndEveryOtherCopy) {
  const std::vector<float> values = {1, 2, 3};
  const std::string path =
      WriteFile("outlive.npy", NpyBytes(1, Dict("<f4", "(3,)"), Bytes(values)));
  Array copy;
  {
    auto array = ReadNpy(path);
    ASSERT_TRUE(array.ok()) << array.status();
    copy = *array;
  }
  std::remove(path.c_str());
  EXPECT_EQ(ArrayBytesOf(copy), Bytes(values));
}

}  // namespace
}  // namespace calib
