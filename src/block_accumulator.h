// BlockAccumulator: folds runs of rows into Sums and per-sample pairs, in parallel and
// deterministically. Rows are cut into fixed blocks of kBlockRows by their global index;
// each block is reduced alone (a block split across two runs is continued, not
// restarted) and complete blocks are merged in index order, so the result has the same
// bits whatever the thread count and however the rows arrive. Not thread-safe; its
// methods use oneTBB in the caller's task_arena.
#ifndef CALIB_SRC_BLOCK_ACCUMULATOR_H_
#define CALIB_SRC_BLOCK_ACCUMULATOR_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "src/huge_pages.h"
#include "src/options.h"
#include "src/reliability_bins.h"
#include "src/row_kernel.h"
#include "src/sums.h"

namespace calib {

inline constexpr uint64_t kBlockRows = 1024;

class BlockAccumulator {
 public:
  explicit BlockAccumulator(const Options& options)
      : options_(options), kernel_(options), total_(options), open_(options) {}

  // Adds the rows of `src`, whose first row must be the next global row (rows()).
  // On a bad value returns the error of the lowest bad row; the accumulator is then
  // unusable.
  absl::Status Add(const RowSource& src, Affine affine);

  // Folds the open block and returns the totals; call once, last.
  Sums Finish();

  uint64_t rows() const { return rows_; }
  // One (confidence, correct) pair per sample, in global order.
  LargeVector<ConfidenceSample>& samples() { return samples_; }

 private:
  const Options options_;
  const RowKernel kernel_;
  uint64_t rows_ = 0;
  Sums total_;  // complete blocks, merged in index order
  Sums open_;   // the block that rows_ falls in, when rows_ is not on a block boundary
  LargeVector<ConfidenceSample> samples_;
};

// Sums of per-row terms over rows [0, rows) by fixed blocks merged in index order: the
// same bits whatever the thread count. `terms(begin, end)` returns a T for a block.
template <typename T, typename Terms, typename Merge>
T ReduceBlocks(uint64_t rows, const Terms& terms, const Merge& merge);

}  // namespace calib

#include "src/block_accumulator-inl.h"  // IWYU pragma: export

#endif  // CALIB_SRC_BLOCK_ACCUMULATOR_H_
