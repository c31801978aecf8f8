// KeepFreedMemory: glibc settings for a process that receives or sends large messages
// one after another (calibd, `calib --server`, and bench/null_service so that it
// measures the same). Call once at start, before other threads allocate.
#ifndef CALIB_SRC_KEEP_FREED_MEMORY_H_
#define CALIB_SRC_KEEP_FREED_MEMORY_H_

#include <malloc.h>

namespace calib {

// Parsing a message frees the previous one's bytes (sending one, its slices), and glibc
// would return such large blocks to the kernel (munmap above 128 KiB at first, trim
// above 128 KiB of free top), so batch after batch would land on fresh pages, whose
// first touch costs more than the arithmetic on them on a VM (calibd's minor faults over
// one 400 MB stream: ~60,000 before, ~0 once warm after). Keeping blocks up to 32 MiB
// (glibc's largest threshold; a message is at most half of --max-message-bytes) and
// 256 MiB of free heap lets the next batch reuse mapped pages; RSS levels off at the
// working set.
inline void KeepFreedMemory() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

}  // namespace calib

#endif  // CALIB_SRC_KEEP_FREED_MEMORY_H_
