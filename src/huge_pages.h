// HugePageAllocator: a std::allocator for the engine's large buffers (the fit store, the
// per-sample pairs). Blocks of 4 MiB and more are 2 MiB-aligned and advised to Linux as
// transparent huge pages, so filling one takes a page fault per 2 MiB rather than per
// 4 KiB: on virtual machines the faults, not the copying, were most of that time.
// Smaller blocks come from malloc as usual. resize() default-initialises (leaves
// trivial types unwritten): for buffers whose every element is written before it is
// read. Stateless and thread-safe.
#ifndef CALIB_SRC_HUGE_PAGES_H_
#define CALIB_SRC_HUGE_PAGES_H_

#include <cstddef>
#include <cstdlib>
#include <new>
#include <utility>
#include <vector>

namespace calib {

// Throws std::bad_alloc when there is no memory, like operator new.
void* AllocateLarge(size_t bytes);

template <typename T>
struct HugePageAllocator {
  using value_type = T;

  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) {}  // NOLINT: rebinding converts

  T* allocate(size_t n) { return static_cast<T*>(AllocateLarge(n * sizeof(T))); }
  void deallocate(T* p, size_t) { std::free(p); }

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
