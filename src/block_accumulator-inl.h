// The template half of block_accumulator.h.
#ifndef CALIB_SRC_BLOCK_ACCUMULATOR_INL_H_
#define CALIB_SRC_BLOCK_ACCUMULATOR_INL_H_

#include <algorithm>
#include <vector>

#include "oneapi/tbb/parallel_for.h"

namespace calib {

template <typename T, typename Terms, typename Merge>
T ReduceBlocks(uint64_t rows, const Terms& terms, const Merge& merge) {
  const uint64_t blocks = (rows + kBlockRows - 1) / kBlockRows;
  std::vector<T> parts(blocks);
  tbb::parallel_for(uint64_t{0}, blocks, [&](uint64_t b) {
    parts[b] = terms(b * kBlockRows, std::min(rows, (b + 1) * kBlockRows));
  });
  T total{};
  for (const T& part : parts) merge(total, part);
  return total;
}

}  // namespace calib

#endif  // CALIB_SRC_BLOCK_ACCUMULATOR_INL_H_
