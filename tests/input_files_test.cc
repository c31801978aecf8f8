#include "client/input_files.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "tests/array_test_util.h"

namespace calib {
namespace {

using ::testing::HasSubstr;

std::string WriteCsv(const std::string& name, const std::string& contents) {
  const std::string path = ::testing::TempDir() + "/input_files_test_" + name;
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

// A .npy of float32 zeros of the given shape ("(2, 3, 4)"), as np.save writes it.
std::string WriteNpy(const std::string& name, const std::string& shape, size_t count) {
  const std::string path = ::testing::TempDir() + "/input_files_test_" + name;
  std::ofstream(path, std::ios::binary)
      << NpyBytes(1, Dict("<f4", shape), std::string(4 * count, '\0'));
  return path;
}

TEST(InputFilesTest, MatrixGivesRowsAndClasses) {
  auto in = LoadEvalInput(WriteCsv("z.csv", "1,2,3\n4,5,6\n"),
                          WriteCsv("y.csv", "2\n0\n"), v1::ACTIVATION_UNSPECIFIED);
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_EQ(in->num_classes, 3u);
  EXPECT_EQ(in->rows, 2u);
  EXPECT_EQ(in->labels_per_row, 1u);
  EXPECT_EQ(in->logits.dtype, v1::DTYPE_FLOAT64);
  EXPECT_EQ(in->labels.dtype, v1::DTYPE_INT64);
}

TEST(InputFilesTest, OneAxisIsABinaryModel) {
  auto in = LoadEvalInput(WriteCsv("b.csv", "0.5\n-1\n2\n"),
                          WriteCsv("by.csv", "1\n0\n1\n"), v1::ACTIVATION_UNSPECIFIED);
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_EQ(in->num_classes, 1u);
  EXPECT_EQ(in->rows, 3u);
}

TEST(InputFilesTest, SequencesFlattenToRows) {
  auto in = LoadEvalInput(WriteNpy("bsc.npy", "(2, 3, 4)", 24),
                          WriteCsv("bs.csv", "0,1,2\n3,0,1\n"), v1::ACTIVATION_SOFTMAX);
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_EQ(in->num_classes, 4u);
  EXPECT_EQ(in->rows, 6u);
}

TEST(InputFilesTest, MultiLabelSigmoidTakesATargetPerLogit) {
  auto in = LoadEvalInput(WriteCsv("ml.csv", "1,2\n3,4\n"),
                          WriteCsv("mly.csv", "1,0\n0,1\n"), v1::ACTIVATION_SIGMOID);
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_EQ(in->num_classes, 2u);
  EXPECT_EQ(in->rows, 2u);
  EXPECT_EQ(in->labels_per_row, 2u);
}

TEST(InputFilesTest, CountMismatchNamesBothFilesAndShapes) {
  const std::string logits = WriteNpy("nc.npy", "(4, 3)", 12);
  const std::string labels = WriteCsv("five.csv", "0\n1\n2\n0\n1\n");
  auto in = LoadEvalInput(logits, labels, v1::ACTIVATION_UNSPECIFIED);
  ASSERT_FALSE(in.ok());
  EXPECT_EQ(in.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(in.status().message());
  EXPECT_THAT(message, HasSubstr(labels + " holds 5 labels (shape [5])"));
  EXPECT_THAT(message, HasSubstr(logits + " has logits of shape [4, 3]"));
  EXPECT_THAT(message, HasSubstr("expected 4 labels"));
}

TEST(InputFilesTest, OneHotLabelsGetAHint) {
  auto in = LoadEvalInput(WriteCsv("oh.csv", "1,2\n3,4\n"),
                          WriteCsv("ohy.csv", "1,0\n0,1\n"), v1::ACTIVATION_UNSPECIFIED);
  ASSERT_FALSE(in.ok());
  EXPECT_THAT(std::string(in.status().message()), HasSubstr("one-hot labels?"));
}

TEST(InputFilesTest, RejectsOtherRanksAndEmptyClassAxes) {
  auto four = LoadEvalInput(WriteNpy("4d.npy", "(1, 1, 1, 2)", 2),
                            WriteCsv("one.csv", "0\n"), v1::ACTIVATION_UNSPECIFIED);
  ASSERT_FALSE(four.ok());
  EXPECT_THAT(std::string(four.status().message()),
              HasSubstr("logits of shape [1, 1, 1, 2]; expected [N] (binary), [N, C]"));
  auto none = LoadEvalInput(WriteNpy("c0.npy", "(3, 0)", 0), WriteCsv("one.csv", "0\n"),
                            v1::ACTIVATION_UNSPECIFIED);
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("have 0 classes"));
}

TEST(InputFilesTest, RejectsUnknownFileTypes) {
  auto in = LoadEvalInput(WriteCsv("z.txt", "1,2\n"), WriteCsv("y.csv", "0\n"),
                          v1::ACTIVATION_UNSPECIFIED);
  ASSERT_FALSE(in.ok());
  EXPECT_THAT(std::string(in.status().message()),
              HasSubstr("z.txt: unknown file type; expected a .npy or .csv file"));
}

}  // namespace
}  // namespace calib
