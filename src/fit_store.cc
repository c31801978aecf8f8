#include "src/fit_store.h"

#include <algorithm>
#include <cstring>

#include "src/labels.h"
#include "src/tensor.h"

namespace calib {
namespace {

// SplitMix64's finaliser: a bijection that mixes every input bit into every output bit.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15u;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
  return x ^ (x >> 31);
}

// The first allocation, so that small rows are not copied at every doubling.
constexpr uint64_t kFirstRows = 1024;

// The expected rows are a client's word: trusted up to this many times the rows of the
// first batch, so that a client that claims many rows and sends few holds no more of
// the budget than it could by sending 128 times what it sent. The clients' first
// message (4 MiB) times 128 covers the default 256 MiB store with room to spare (64
// fell just short of it for 1,000-class rows, costing a copy).
constexpr uint64_t kExpectedPerFirstRow = 128;

// Keeps the reservoir's draws apart from the bootstrap's, which use the same seed.
constexpr uint64_t kReservoirStream = 0x6669745f73746f72u;  // "fit_stor"

}  // namespace

uint64_t ReservoirDraw(uint64_t seed, uint64_t index) {
  const uint64_t h = Mix(Mix(seed ^ kReservoirStream) + index);
  // Lemire's multiply-shift: floor(h * (index + 1) / 2^64), uniform up to 2^-64 bias.
  return static_cast<uint64_t>((static_cast<unsigned __int128>(h) * (index + 1)) >> 64);
}

uint64_t FitStore::SamplesIn(const int32_t* labels) const {
  uint64_t n = 0;
  for (uint32_t i = 0; i < labels_per_row_; ++i) n += labels[i] != kIgnoredLabel;
  return n;
}

absl::Status FitStore::Grow(uint64_t rows) {
  if (rows <= capacity_) return absl::OkStatus();
  // While the rows are copied the old buffers are alive too (not the extra, which the
  // caller builds later): reserved until the copy ends.
  const uint64_t per_row = row_bytes() + extra_bytes_per_row_;
  const uint64_t old_bytes = capacity_ * row_bytes();
  auto grow_to = [&](uint64_t target) {
    return reservation_->Grow((target - capacity_) * per_row + old_bytes,
                              "the fit store");
  };
  // The rows the caller expects, at the first growth, need no copy at all; geometric
  // growth keeps the copies linear; the exact size is the fallback when the budget has
  // no room for these.
  const uint64_t geometric =
      std::min(max_rows_, std::max({rows, capacity_ * 2, kFirstRows}));
  const uint64_t expected =
      capacity_ == 0
          ? std::min(max_rows_,
                     std::max(geometric,
                              std::min(expected_rows_, kExpectedPerFirstRow * rows)))
          : geometric;
  uint64_t target = 0;
  absl::Status status;
  for (const uint64_t candidate : {expected, geometric, rows}) {
    if (candidate == target) continue;
    target = candidate;
    status = grow_to(target);
    if (status.ok()) break;
  }
  if (!status.ok()) return status;
  logits_.reserve(target * logit_row_bytes_);
  labels_.reserve(target * labels_per_row_);
  reservation_->Shrink(old_bytes);
  capacity_ = target;
  return absl::OkStatus();
}

void FitStore::Put(uint64_t slot, const char* logits, const int32_t* labels) {
  std::memcpy(logits_.data() + slot * logit_row_bytes_, logits, logit_row_bytes_);
  std::memcpy(labels_.data() + slot * labels_per_row_, labels, 4 * labels_per_row_);
}

absl::Status FitStore::Add(v1::DType dtype, const char* logits, const int32_t* labels,
                           uint64_t rows) {
  if (rows == 0) return absl::OkStatus();
  if (dtype_ == v1::DTYPE_UNSPECIFIED) {
    dtype_ = dtype;
    logit_row_bytes_ = uint64_t{num_classes_} * DTypeSize(dtype);
    max_rows_ = std::max<uint64_t>(1, max_bytes_ / row_bytes());
  }
  // Room for the rows this batch appends, at once: one growth per batch at most.
  uint64_t offered = 0;
  for (uint64_t r = 0; r < rows; ++r)
    offered += SamplesIn(labels + r * labels_per_row_) > 0;
  if (absl::Status s = Grow(std::min(max_rows_, kept_ + offered)); !s.ok()) return s;
  uint64_t r = 0;
  // While there is room every row with a sample is kept, in order: each run of them
  // in one copy (the whole batch, in most batches).
  while (r < rows && kept_ < max_rows_) {
    const uint64_t begin = r;
    uint64_t samples = 0;
    for (; r < rows && kept_ + (r - begin) < max_rows_; ++r) {
      const uint64_t s = SamplesIn(labels + r * labels_per_row_);
      if (s == 0) break;
      samples += s;
    }
    logits_.insert(logits_.end(), logits + begin * logit_row_bytes_,
                   logits + r * logit_row_bytes_);
    labels_.insert(labels_.end(), labels + begin * labels_per_row_,
                   labels + r * labels_per_row_);
    kept_ += r - begin;
    offered_ += r - begin;
    samples_ += samples;
    if (r < rows && kept_ < max_rows_) ++r;  // stopped at a row without a sample
  }
  for (; r < rows; ++r) {
    const char* row_logits = logits + r * logit_row_bytes_;
    const int32_t* row_labels = labels + r * labels_per_row_;
    const uint64_t samples = SamplesIn(row_labels);
    if (samples == 0) continue;
    const uint64_t slot = ReservoirDraw(seed_, offered_);
    if (slot < max_rows_) {
      samples_ -= SamplesIn(labels_.data() + slot * labels_per_row_);
      samples_ += samples;
      Put(slot, row_logits, row_labels);
    }
    ++offered_;
  }
  return absl::OkStatus();
}

RowSource FitStore::rows() const {
  return {dtype_ == v1::DTYPE_UNSPECIFIED ? v1::DTYPE_FLOAT32 : dtype_, logits_.data(),
          labels_.data(), kept_, 0};
}

}  // namespace calib
