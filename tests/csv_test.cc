#include "client/csv.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "tests/array_test_util.h"

namespace calib {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string WriteFile(const std::string& name, const std::string& contents) {
  const std::string path = ::testing::TempDir() + "/csv_test_" + name;
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

template <typename T>
std::vector<T> Values(const Array& array) {
  const std::string bytes = ArrayBytesOf(array);
  std::vector<T> out(bytes.size() / sizeof(T));
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

TEST(CsvTest, ReadsLogitsAsFloat64RowsSkippingTheHeader) {
  auto array = ReadCsv(WriteFile("logits.csv",
                                 "class_0,class_1,class_2\n"
                                 "1.5, -2, 3e-1\n"
                                 "0,0.25,-7.125\n"),
                       CsvNumbers::kFloat64);
  ASSERT_TRUE(array.ok()) << array.status();
  EXPECT_EQ(array->dtype, v1::DTYPE_FLOAT64);
  EXPECT_THAT(array->shape, ElementsAre(2, 3));
  EXPECT_THAT(Values<double>(*array), ElementsAre(1.5, -2.0, 0.3, 0.0, 0.25, -7.125));
}

TEST(CsvTest, OneColumnIsOneAxis) {
  auto array = ReadCsv(WriteFile("column.csv", "0.5\n-1\n2\n"), CsvNumbers::kFloat64);
  ASSERT_TRUE(array.ok()) << array.status();
  EXPECT_THAT(array->shape, ElementsAre(3));
  EXPECT_THAT(Values<double>(*array), ElementsAre(0.5, -1.0, 2.0));
}

TEST(CsvTest, WholeNumberLabelsAreInt64) {
  // "2.0" is as much a class index as "2"; CRLF line ends and blank lines are fine.
  auto array =
      ReadCsv(WriteFile("labels.csv", "label\r\n2\r\n-100\r\n\r\n2.0\r\n0\r\n\n"),
              CsvNumbers::kInt64IfIntegral);
  ASSERT_TRUE(array.ok()) << array.status();
  EXPECT_EQ(array->dtype, v1::DTYPE_INT64);
  EXPECT_THAT(array->shape, ElementsAre(4));
  EXPECT_THAT(Values<int64_t>(*array), ElementsAre(2, -100, 2, 0));
}

TEST(CsvTest, LabelsWithAFractionAreFloat64) {
  auto array =
      ReadCsv(WriteFile("targets.csv", "1,0\n0.5,1\n"), CsvNumbers::kInt64IfIntegral);
  ASSERT_TRUE(array.ok()) << array.status();
  EXPECT_EQ(array->dtype, v1::DTYPE_FLOAT64);
  EXPECT_THAT(array->shape, ElementsAre(2, 2));
  EXPECT_THAT(Values<double>(*array), ElementsAre(1.0, 0.0, 0.5, 1.0));
}

TEST(CsvTest, Int64KeepsEveryDigit) {
  // 2^53 + 1 is not a double; read as an integer it stays exact.
  auto array =
      ReadCsv(WriteFile("big.csv", "9007199254740993\n"), CsvNumbers::kInt64IfIntegral);
  ASSERT_TRUE(array.ok()) << array.status();
  EXPECT_THAT(Values<int64_t>(*array), ElementsAre(int64_t{9007199254740993}));
}

TEST(CsvTest, NamesTheLineAndFieldOfANonNumber) {
  auto array = ReadCsv(WriteFile("bad.csv", "a,b\n1,2\n3,x4\n"), CsvNumbers::kFloat64);
  ASSERT_FALSE(array.ok());
  EXPECT_EQ(array.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(array.status().message()),
              HasSubstr("csv_test_bad.csv: line 3, field 2: 'x4' is not a number"));
}

TEST(CsvTest, OnlyTheFirstLineMayBeAHeader) {
  auto array =
      ReadCsv(WriteFile("two_headers.csv", "a,b\nc,d\n1,2\n"), CsvNumbers::kFloat64);
  ASSERT_FALSE(array.ok());
  EXPECT_THAT(std::string(array.status().message()), HasSubstr("line 2, field 1: 'c'"));
}

TEST(CsvTest, EmptyFieldIsNotANumber) {
  auto array = ReadCsv(WriteFile("empty_field.csv", "1,2\n3,\n"), CsvNumbers::kFloat64);
  ASSERT_FALSE(array.ok());
  EXPECT_THAT(std::string(array.status().message()), HasSubstr("line 2, field 2: ''"));
}

TEST(CsvTest, RowsMustHaveTheSameFieldCount) {
  auto array =
      ReadCsv(WriteFile("ragged.csv", "h1,h2\n1,2\n3,4,5\n"), CsvNumbers::kFloat64);
  ASSERT_FALSE(array.ok());
  EXPECT_THAT(std::string(array.status().message()),
              HasSubstr("line 3 has 3 fields, but line 2 has 2"));
}

TEST(CsvTest, AFileWithoutNumbersIsAnError) {
  for (const std::string& contents : {std::string(""), std::string("only,a,header\n")}) {
    auto array = ReadCsv(WriteFile("no_rows.csv", contents), CsvNumbers::kFloat64);
    ASSERT_FALSE(array.ok());
    EXPECT_THAT(std::string(array.status().message()), HasSubstr("no rows of numbers"));
  }
}

TEST(CsvTest, NamesAMissingFile) {
  auto array =
      ReadCsv(::testing::TempDir() + "/csv_test_missing.csv", CsvNumbers::kFloat64);
  ASSERT_FALSE(array.ok());
  EXPECT_EQ(array.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(array.status().message()), HasSubstr("csv_test_missing.csv"));
}

}  // namespace
}  // namespace calib
