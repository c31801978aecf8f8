#include "src/huge_pages.h"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <mutex>
#include <new>
#include <vector>

namespace calib {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;
// glibc unmaps freed blocks from 32 MiB (its largest M_MMAP_THRESHOLD); smaller ones it
// keeps in its heap where calibd's KeepFreedMemory asks it to.
constexpr size_t kKeptFrom = size_t{32} << 20;

// Eight size classes per doubling from kKeptFrom (steps of 4 MiB and up, so whole huge
// pages), so that an evaluation of slightly fewer rows reuses the last one's block; the
// few MiB past the request are never touched, so they cost no memory.
size_t BlockBytes(size_t bytes) {
  if (bytes < kKeptFrom) return (bytes + kHugePage - 1) / kHugePage * kHugePage;
  const size_t step = std::bit_floor(bytes) / 8;
  return (bytes + step - 1) / step * step;
}

struct Block {
  void* p;
  size_t bytes;
};

class KeptBlocks {
 public:
  void SetLimit(size_t bytes) {
    std::vector<Block> evicted;
    {
      std::lock_guard lock(mu_);
      limit_ = bytes;
      Evict(0, &evicted);
    }
    for (const Block& b : evicted) std::free(b.p);
  }

  void* Take(size_t bytes) {
    std::lock_guard lock(mu_);
    for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) {
      if (it->bytes != bytes) continue;
      void* p = it->p;
      held_ -= bytes;
      blocks_.erase(std::next(it).base());
      return p;
    }
    return nullptr;
  }

  // False when the block is not kept: the caller frees it.
  bool Keep(void* p, size_t bytes) {
    // Not listed yet, so no Take can hand it out meanwhile. A kernel that refuses
    // MADV_FREE could never take the pages back: then the block is not kept.
    if (bytes > limit() || madvise(p, bytes, MADV_FREE) != 0) return false;
    std::vector<Block> evicted;
    {
      std::lock_guard lock(mu_);
      if (bytes > limit_) return false;
      Evict(bytes, &evicted);
      blocks_.push_back({p, bytes});
      held_ += bytes;
    }
    for (const Block& b : evicted) std::free(b.p);
    return true;
  }

  size_t held() {
    std::lock_guard lock(mu_);
    return held_;
  }

  size_t limit() {
    std::lock_guard lock(mu_);
    return limit_;
  }

 private:
  // Drops the oldest blocks until `room` more bytes fit under the limit.
  void Evict(size_t room, std::vector<Block>* evicted) {
    while (held_ + room > limit_ && !blocks_.empty()) {
      evicted->push_back(blocks_.front());
      held_ -= blocks_.front().bytes;
      blocks_.erase(blocks_.begin());
    }
  }

  std::mutex mu_;
  size_t limit_ = 0;
  size_t held_ = 0;
  std::vector<Block> blocks_;  // oldest first
};

KeptBlocks& Kept() {
  static KeptBlocks* const kept = new KeptBlocks;  // never destroyed: used until exit
  return *kept;
}

}  // namespace

void* AllocateLarge(size_t bytes) {
  void* p = nullptr;
  if (bytes < 2 * kHugePage) {
    p = std::malloc(bytes == 0 ? 1 : bytes);
  } else {
    const size_t block = BlockBytes(bytes);
    if (block >= kKeptFrom && (p = Kept().Take(block)) != nullptr) return p;
    p = std::aligned_alloc(kHugePage, block);
#ifdef MADV_HUGEPAGE
    // Only advice: where the kernel has transparent huge pages off, nothing changes.
    if (p != nullptr) madvise(p, block, MADV_HUGEPAGE);
#endif
  }
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void FreeLarge(void* p, size_t bytes) {
  if (p == nullptr) return;
  if (bytes >= kKeptFrom && Kept().Keep(p, BlockBytes(bytes))) return;
  std::free(p);
}

void KeepFreedLargeBlocks(size_t bytes) { Kept().SetLimit(bytes); }

size_t KeptLargeBlockBytes() { return Kept().held(); }

}  // namespace calib
