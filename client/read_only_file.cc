#include "client/read_only_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace calib {
namespace {

absl::Status ErrnoError(const std::string& path, const char* what, int err) {
  std::string message = absl::StrCat(path, ": cannot ", what, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case ENOMEM:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InvalidArgumentError(message);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<ReadOnlyFile>> ReadOnlyFile::Open(
    const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(path, "open", errno);
  struct stat st;
  const bool stat_ok = fstat(fd, &st) == 0;
  const int stat_errno = errno;
  // Owned from here on, so that every return below closes it.
  std::unique_ptr<ReadOnlyFile> file(
      new ReadOnlyFile(path, fd, stat_ok ? static_cast<uint64_t>(st.st_size) : 0));
  if (!stat_ok) return ErrnoError(path, "stat", stat_errno);
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": is not a regular file"));
  }
  // Readers go front to back: let the kernel read well ahead.
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  return file;
}

ReadOnlyFile::~ReadOnlyFile() { close(fd_); }

absl::Status ReadOnlyFile::Read(uint64_t offset, uint64_t n, char* dst) const {
  for (uint64_t done = 0; done < n;) {
    const ssize_t got =
        pread(fd_, dst + done, n - done, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return ErrnoError(path_, "read", errno);
    if (got == 0) {
      return absl::DataLossError(absl::StrCat(path_, ": ended at byte ", offset + done,
                                              " while being read (it was ", size_,
                                              " bytes when opened)"));
    }
    done += static_cast<uint64_t>(got);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadOnlyFile::ReadAll() const {
  std::string contents(size_, '\0');
  if (absl::Status status = Read(0, size_, contents.data()); !status.ok()) return status;
  return contents;
}

}  // namespace calib
