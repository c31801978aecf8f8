// HugePageAllocator: large blocks are 2 MiB-aligned and hold what is written to them;
// small ones still work; a LargeVector keeps its contents across growth, and resize
// leaves new elements for the caller to write; freed blocks of 32 MiB and more are kept
// up to the limit, newest first, and handed out again for the same size class.
#include "src/huge_pages.h"

#include <cstdint>
#include <numeric>

#include "gtest/gtest.h"

namespace calib {
namespace {

constexpr uintptr_t kHugePage = uintptr_t{2} << 20;

TEST(HugePagesTest, LargeBlocksAreHugePageAligned) {
  for (size_t bytes : {size_t{4} << 20, (size_t{4} << 20) + 1, size_t{37} << 20}) {
    auto* p = static_cast<unsigned char*>(AllocateLarge(bytes));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kHugePage, 0u) << bytes;
    p[0] = 1;
    p[bytes - 1] = 2;
    EXPECT_EQ(p[0] + p[bytes - 1], 3);
    FreeLarge(p, bytes);
  }
}

TEST(HugePagesTest, SmallBlocksComeFromMalloc) {
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{4096}, (size_t{4} << 20) - 1}) {
    void* p = AllocateLarge(bytes);
    ASSERT_NE(p, nullptr) << bytes;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % alignof(std::max_align_t), 0u) << bytes;
    FreeLarge(p, bytes);
  }
}

TEST(HugePagesTest, LargeVectorKeepsItsContentsAcrossGrowth) {
  LargeVector<uint64_t> v;
  for (uint64_t i = 0; i < 3'000'000; ++i) v.push_back(i);  // past 16 MiB, reallocating
  EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data()) % kHugePage, 0u);
  EXPECT_EQ(std::accumulate(v.begin(), v.end(), uint64_t{0}),
            uint64_t{3'000'000} * 2'999'999 / 2);
  const size_t before = v.size();
  v.resize(before + 10);  // default-initialised: written here before being read
  for (size_t i = before; i < v.size(); ++i) v[i] = i;
  EXPECT_EQ(v.back(), before + 9);
  LargeVector<uint64_t> copy(v.begin(), v.begin() + 5);
  EXPECT_EQ(copy, (LargeVector<uint64_t>{0, 1, 2, 3, 4}));
}

TEST(HugePagesTest, FreedBlocksAreKeptWithinTheLimitForTheSameSizeClass) {
  constexpr size_t kMiB = size_t{1} << 20;
  auto allocate = [](size_t bytes) {
    auto* p = static_cast<unsigned char*>(AllocateLarge(bytes));
    p[0] = 7;
    p[bytes - 1] = 9;
    return p;
  };
  // Not asked to: nothing is kept.
  unsigned char* p = allocate(40 * kMiB);
  FreeLarge(p, 40 * kMiB);
  EXPECT_EQ(KeptLargeBlockBytes(), 0u);

  KeepFreedLargeBlocks(110 * kMiB);
  p = allocate(40 * kMiB);
  FreeLarge(p, 40 * kMiB);
  EXPECT_EQ(KeptLargeBlockBytes(), 40 * kMiB);
  // 37 MiB is in the 40 MiB class (steps of 4 MiB from 32 MiB): the same block, whose
  // bytes may have been taken back or not, and which holds what is written again.
  unsigned char* again = allocate(37 * kMiB);
  EXPECT_EQ(again, p);
  EXPECT_EQ(KeptLargeBlockBytes(), 0u);
  EXPECT_EQ(again[0] + again[37 * kMiB - 1], 16);
  // 41 MiB is the 44 MiB class: a new block.
  unsigned char* other = allocate(41 * kMiB);
  EXPECT_NE(other, again);
  FreeLarge(again, 37 * kMiB);
  FreeLarge(other, 41 * kMiB);
  EXPECT_EQ(KeptLargeBlockBytes(), 84 * kMiB);
  // Of the two, the one of the asked class, though not the newest.
  EXPECT_EQ(allocate(39 * kMiB), p);
  FreeLarge(p, 39 * kMiB);
  // Below 32 MiB glibc's heap keeps them; over the limit they go back at once.
  unsigned char* small = allocate(30 * kMiB);
  unsigned char* huge = allocate(120 * kMiB);
  FreeLarge(small, 30 * kMiB);
  FreeLarge(huge, 120 * kMiB);
  EXPECT_EQ(KeptLargeBlockBytes(), 84 * kMiB);
  // A 64 MiB block makes room by dropping the oldest, now the 44 MiB one (p was kept
  // again after it): 40 + 64 fit under the 110.
  unsigned char* big = allocate(64 * kMiB);
  FreeLarge(big, 64 * kMiB);
  EXPECT_EQ(KeptLargeBlockBytes(), 104 * kMiB);
  EXPECT_EQ(allocate(39 * kMiB), p);
  EXPECT_EQ(allocate(62 * kMiB), big);  // the 64 MiB class
  FreeLarge(p, 39 * kMiB);
  FreeLarge(big, 62 * kMiB);
  // A lower limit gives back what it no longer allows.
  KeepFreedLargeBlocks(0);
  EXPECT_EQ(KeptLargeBlockBytes(), 0u);
}

}  // namespace
}  // namespace calib
