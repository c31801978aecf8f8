// HugePageAllocator: large blocks are 2 MiB-aligned and hold what is written to them;
// small ones still work; a LargeVector keeps its contents across growth, and resize
// leaves new elements for the caller to write.
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
    std::free(p);
  }
}

TEST(HugePagesTest, SmallBlocksComeFromMalloc) {
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{4096}, (size_t{4} << 20) - 1}) {
    void* p = AllocateLarge(bytes);
    ASSERT_NE(p, nullptr) << bytes;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % alignof(std::max_align_t), 0u) << bytes;
    std::free(p);
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

}  // namespace
}  // namespace calib
