#include "client/row_chunks.h"

#include <algorithm>
#include <chrono>

#include "src/status_macros.h"

namespace calib {

RowChunks::RowChunks(const EvalInput& input, uint64_t chunk_bytes)
    : input_(input), rows_per_chunk_(RowsPerChunk(input, chunk_bytes)) {
  StartRead(0, 0);
}

RowChunks::~RowChunks() {
  // A deferred read (no thread could be had) has not started and need not run.
  if (pending_.valid() &&
      pending_.wait_for(std::chrono::seconds(0)) != std::future_status::deferred) {
    pending_.wait();
  }
}

void RowChunks::StartRead(uint64_t row, int slot) {
  const uint64_t rows = std::min(rows_per_chunk_, input_.rows - row);
  Buffer& buffer = buffers_[slot];
  buffer.logits.resize(rows * input_.logits_row_bytes());
  buffer.labels.resize(rows * input_.labels_row_bytes());
  next_row_ = row;
  next_slot_ = slot;
  // Without a thread to spare, the read is deferred to Next instead of throwing.
  pending_ =
      std::async(std::launch::async | std::launch::deferred, [this, row, rows, &buffer] {
        return input_.ReadRows(row, rows, buffer.logits.data(), buffer.labels.data());
      });
}

absl::StatusOr<bool> RowChunks::Next(std::string_view* logits, std::string_view* labels) {
  if (!pending_.valid()) return false;
  CALIB_RETURN_IF_ERROR(pending_.get());
  const Buffer& buffer = buffers_[next_slot_];
  *logits = std::string_view(buffer.logits.data(), buffer.logits.size());
  *labels = std::string_view(buffer.labels.data(), buffer.labels.size());
  const uint64_t after = next_row_ + rows_per_chunk_;
  if (after < input_.rows) StartRead(after, 1 - next_slot_);
  return true;
}

}  // namespace calib
