// RowChunks reads an EvalInput's rows front to back in chunks of whole rows, each
// chunk's logits and labels into buffers of its own, one chunk ahead of the caller on a
// thread of its own: reading the next chunk from the files overlaps the caller's work on
// this one. Not thread-safe: one caller, which keeps `input` alive meanwhile.
#ifndef CALIB_CLIENT_ROW_CHUNKS_H_
#define CALIB_CLIENT_ROW_CHUNKS_H_

#include <cstdint>
#include <future>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/input_files.h"
#include "src/huge_pages.h"

namespace calib {

class RowChunks {
 public:
  // Chunks of RowsPerChunk(input, chunk_bytes) rows; the last may have fewer. No rows
  // are one empty chunk, so that the engine still checks the dtypes.
  RowChunks(const EvalInput& input, uint64_t chunk_bytes);
  // Waits for the read in flight.
  ~RowChunks();
  RowChunks(const RowChunks&) = delete;
  RowChunks& operator=(const RowChunks&) = delete;

  // The next chunk's bytes, valid until the following call; false after the last
  // chunk. A read's error (the path and what failed) ends the chunks.
  absl::StatusOr<bool> Next(std::string_view* logits, std::string_view* labels);

 private:
  struct Buffer {
    LargeVector<char> logits;
    LargeVector<char> labels;
  };

  // Reads the chunk that starts at `row` into buffers_[slot], on another thread.
  void StartRead(uint64_t row, int slot);

  const EvalInput& input_;
  const uint64_t rows_per_chunk_;
  Buffer buffers_[2];
  uint64_t next_row_ = 0;  // the first row of the read in flight
  int next_slot_ = 0;
  std::future<absl::Status> pending_;
};

}  // namespace calib

#endif  // CALIB_CLIENT_ROW_CHUNKS_H_
