// FitStore: the logit rows kept for the temperature and Platt fits, as received, with
// their decoded labels, in at most `max_bytes`. Until the cap every row that has a
// sample is kept, in order; beyond it the store is a uniform reservoir (Algorithm R)
// whose every choice is keyed by (seed, row index), so the kept rows depend only on the
// rows in order, never on how they were split into batches. Each growth is reserved
// first. Not thread-safe: one caller at a time.
#ifndef CALIB_SRC_FIT_STORE_H_
#define CALIB_SRC_FIT_STORE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "calib/v1/calibration.pb.h"
#include "src/huge_pages.h"
#include "src/memory_budget.h"
#include "src/row_kernel.h"

namespace calib {

inline constexpr uint64_t kDefaultFitStoreBytes = uint64_t{256} << 20;

class FitStore {
 public:
  // Rows of `num_classes` logits and `labels_per_row` labels. `extra_bytes_per_row` is
  // reserved with each kept row for what the caller later builds from it.
  // `reservation` must outlive the store. With `expected_rows` (0: unknown) the first
  // growth makes room for that many rows, within the cap and 128 times the first batch's
  // rows, when the reservation allows.
  FitStore(uint64_t max_bytes, uint64_t seed, uint32_t num_classes,
           uint32_t labels_per_row, uint64_t extra_bytes_per_row,
           MemoryReservation* reservation, uint64_t expected_rows = 0)
      : max_bytes_(max_bytes),
        seed_(seed),
        num_classes_(num_classes),
        labels_per_row_(labels_per_row),
        extra_bytes_per_row_(extra_bytes_per_row),
        expected_rows_(expected_rows),
        reservation_(reservation) {}

  // Offers `rows` rows of `dtype` logits (one dtype per store, fixed by the first call
  // with rows) with their labels (kIgnoredLabel for an ignored one). A row whose labels
  // are all ignored is passed over. RESOURCE_EXHAUSTED when the reservation fails.
  absl::Status Add(v1::DType dtype, const char* logits, const int32_t* labels,
                   uint64_t rows);

  // The kept rows (first_row 0): in arrival order until the reservoir starts.
  RowSource rows() const;
  // Rows offered that had a sample.
  uint64_t offered() const { return offered_; }
  uint64_t kept() const { return kept_; }
  // Samples (labels not ignored) in the kept rows.
  uint64_t samples() const { return samples_; }
  // The reservoir started: the kept rows are a sample of those offered.
  bool sampled() const { return offered_ > kept_; }
  uint64_t max_bytes() const { return max_bytes_; }
  // Bytes per kept row: logits and labels, not counting the extra.
  uint64_t row_bytes() const { return logit_row_bytes_ + 4 * uint64_t{labels_per_row_}; }

 private:
  // Makes room for `rows` kept rows, reserving first.
  absl::Status Grow(uint64_t rows);
  void Put(uint64_t slot, const char* logits, const int32_t* labels);
  uint64_t SamplesIn(const int32_t* labels) const;

  const uint64_t max_bytes_;
  const uint64_t seed_;
  const uint32_t num_classes_;
  const uint32_t labels_per_row_;
  const uint64_t extra_bytes_per_row_;
  const uint64_t expected_rows_;
  MemoryReservation* const reservation_;
  v1::DType dtype_ = v1::DTYPE_UNSPECIFIED;
  uint64_t logit_row_bytes_ = 0;
  uint64_t max_rows_ = 0;  // set with the dtype
  uint64_t capacity_ = 0;  // rows reserved and allocated
  uint64_t kept_ = 0;
  uint64_t offered_ = 0;
  uint64_t samples_ = 0;
  LargeVector<char> logits_;
  LargeVector<int32_t> labels_;
};

// The reservoir's draw for the row with 0-based index `index` among those offered:
// uniform in [0, index], a pure function of (seed, index).
uint64_t ReservoirDraw(uint64_t seed, uint64_t index);

}  // namespace calib

#endif  // CALIB_SRC_FIT_STORE_H_
