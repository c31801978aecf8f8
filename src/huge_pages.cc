#include "src/huge_pages.h"

#include <sys/mman.h>

#include <new>

namespace calib {

void* AllocateLarge(size_t bytes) {
  constexpr size_t kHugePage = size_t{2} << 20;
  void* p = nullptr;
  if (bytes < 2 * kHugePage) {
    p = std::malloc(bytes == 0 ? 1 : bytes);
  } else {
    const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    p = std::aligned_alloc(kHugePage, rounded);
#ifdef MADV_HUGEPAGE
    // Only advice: where the kernel has transparent huge pages off, nothing changes.
    if (p != nullptr) madvise(p, rounded, MADV_HUGEPAGE);
#endif
  }
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace calib
