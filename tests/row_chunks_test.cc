// RowChunks against the files it reads: chunks of whole rows, logits and labels of the
// same rows, in order, every byte once; a file cut short ends the chunks with its path.
#include "client/row_chunks.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "client/input_files.h"
#include "tests/array_test_util.h"

namespace calib {
namespace {

using ::testing::HasSubstr;

constexpr uint32_t kClasses = 3;

// `rows` rows of float32 logits 0, 1, 2, ... and int64 labels 0, 1, 2, ... as .npy
// files; the input read from them.
EvalInput WriteInput(const std::string& name, uint64_t rows) {
  std::vector<float> logits(rows * kClasses);
  for (uint64_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(i);
  std::vector<int64_t> labels(rows);
  for (uint64_t i = 0; i < rows; ++i) labels[i] = static_cast<int64_t>(i);
  const std::string dir = ::testing::TempDir() + "/row_chunks_test_" + name;
  std::ofstream(dir + "_logits.npy", std::ios::binary) << NpyBytes(
      1, Dict("<f4", "(" + std::to_string(rows) + ", 3)"),
      std::string(reinterpret_cast<const char*>(logits.data()), logits.size() * 4));
  std::ofstream(dir + "_labels.npy", std::ios::binary) << NpyBytes(
      1, Dict("<i8", "(" + std::to_string(rows) + ",)"),
      std::string(reinterpret_cast<const char*>(labels.data()), labels.size() * 8));
  auto in =
      LoadEvalInput(dir + "_logits.npy", dir + "_labels.npy", v1::ACTIVATION_UNSPECIFIED);
  EXPECT_TRUE(in.ok()) << in.status();
  return *in;
}

// Reads every chunk; the rows of each chunk appended to *sizes.
absl::Status ReadAll(const EvalInput& in, uint64_t chunk_bytes, std::string* logits,
                     std::string* labels, std::vector<uint64_t>* sizes) {
  RowChunks chunks(in, chunk_bytes);
  std::string_view z, y;
  while (true) {
    absl::StatusOr<bool> more = chunks.Next(&z, &y);
    if (!more.ok()) return more.status();
    if (!*more) return absl::OkStatus();
    EXPECT_EQ(z.size() % (kClasses * 4), 0u);
    EXPECT_EQ(z.size() / (kClasses * 4), y.size() / 8) << "logits and labels rows differ";
    sizes->push_back(y.size() / 8);
    logits->append(z);
    labels->append(y);
  }
}

TEST(RowChunksTest, WholeRowsInOrderEveryByteOnce) {
  const EvalInput in = WriteInput("order", 1000);
  // A row is 12 + 8 bytes: 1000 bytes hold 50 rows.
  for (uint64_t chunk_bytes :
       {uint64_t{1000}, uint64_t{1019}, uint64_t{20}, uint64_t{7}, uint64_t{1} << 20}) {
    std::string logits, labels;
    std::vector<uint64_t> sizes;
    ASSERT_TRUE(ReadAll(in, chunk_bytes, &logits, &labels, &sizes).ok());
    EXPECT_EQ(logits, ArrayBytesOf(in.logits)) << chunk_bytes;
    EXPECT_EQ(labels, ArrayBytesOf(in.labels)) << chunk_bytes;
    const uint64_t per_chunk = RowsPerChunk(in, chunk_bytes);
    ASSERT_FALSE(sizes.empty());
    EXPECT_EQ(sizes.size(), (1000 + per_chunk - 1) / per_chunk) << chunk_bytes;
    for (size_t i = 0; i + 1 < sizes.size(); ++i) EXPECT_EQ(sizes[i], per_chunk);
  }
  EXPECT_EQ(RowsPerChunk(in, 1000), 50u);
  EXPECT_EQ(RowsPerChunk(in, 7), 1u);
}

TEST(RowChunksTest, NoRowsAreOneEmptyChunk) {
  const EvalInput in = WriteInput("empty", 0);
  RowChunks chunks(in, 1000);
  std::string_view z = "x", y = "x";
  auto more = chunks.Next(&z, &y);
  ASSERT_TRUE(more.ok());
  EXPECT_TRUE(*more);
  EXPECT_TRUE(z.empty());
  EXPECT_TRUE(y.empty());
  more = chunks.Next(&z, &y);
  ASSERT_TRUE(more.ok());
  EXPECT_FALSE(*more);
}

TEST(RowChunksTest, AFileCutShortEndsTheChunksNamingIt) {
  const EvalInput in = WriteInput("cut", 1000);
  const std::string path = ::testing::TempDir() + "/row_chunks_test_cut_logits.npy";
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 100);
  std::string logits, labels;
  std::vector<uint64_t> sizes;
  const absl::Status status = ReadAll(in, 1000, &logits, &labels, &sizes);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(status.message()), HasSubstr(path));
  // Every chunk before the one that reaches the cut came whole.
  EXPECT_EQ(sizes.size(), 19u);
}

// Under the sanitizer build (CI), a read still writing into freed buffers would fail.
TEST(RowChunksTest, StoppingEarlyWaitsForTheReadInFlight) {
  const EvalInput in = WriteInput("early", 1000);
  for (int i = 0; i < 100; ++i) {
    RowChunks chunks(in, 20);
    std::string_view z, y;
    ASSERT_TRUE(chunks.Next(&z, &y).ok());
    EXPECT_EQ(y.size(), 8u);
  }
}

}  // namespace
}  // namespace calib
