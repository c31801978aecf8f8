// HugePageAllocator: a std::allocator for the engine's large buffers (the fit store, the
// per-sample pairs). Blocks of 4 MiB and more are 2 MiB-aligned and advised to Linux as
// transparent huge pages, so filling one takes a page fault per 2 MiB rather than per
// 4 KiB: on virtual machines the faults, not the copying, were most of that time. A
// process that evaluates again and again (calibd) may keep freed blocks of 32 MiB and
// more for the next evaluation (KeepFreedLargeBlocks). Smaller blocks come from malloc.
// resize() default-initialises (leaves trivial types unwritten): for buffers whose every
// element is written before it is read. Thread-safe.
#ifndef CALIB_SRC_HUGE_PAGES_H_
#define CALIB_SRC_HUGE_PAGES_H_

#include <cstddef>
#include <cstdlib>
#include <new>
#include <utility>
#include <vector>

namespace calib {

// Throws std::bad_alloc when there is no memory, like operator new. A kept block of the
// same size class is reused, with whatever it last held.
void* AllocateLarge(size_t bytes);
// `bytes` as given to AllocateLarge.
void FreeLarge(void* p, size_t bytes);

// Freed blocks of 32 MiB and more (the fit store's, and the per-sample pairs' and the
// equal-mass scratch's beyond a million samples or so) are kept, up to `bytes` in all,
// the oldest dropped first, rather than unmapped: their pages are handed back with
// MADV_FREE, which the kernel takes back only under memory pressure, so that the next
// evaluation's buffer of the same size class is written without a page fault per 2 MiB
// (each zeroes the page; on a VM that was a quarter of a fitting evaluation in calibd).
// 0, the default, keeps none.
void KeepFreedLargeBlocks(size_t bytes);
// The bytes kept now, for calibd's metrics and the tests.
size_t KeptLargeBlockBytes();

template <typename T>
struct HugePageAllocator {
  using value_type = T;

  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) {}  // NOLINT: rebinding converts

  T* allocate(size_t n) { return static_cast<T*>(AllocateLarge(n * sizeof(T))); }
  void deallocate(T* p, size_t n) { FreeLarge(p, n * sizeof(T)); }

  template <typename U>
  void construct(U* p) {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }

  friend bool operator==(const HugePageAllocator&, const HugePageAllocator&) {
    return true;
  }
};

template <typename T>
using LargeVector = std::vector<T, HugePageAllocator<T>>;

}  // namespace calib

#endif  // CALIB_SRC_HUGE_PAGES_H_
