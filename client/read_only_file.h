// ReadOnlyFile: a regular file open for reading, closed when the object goes. Reads
// copy a byte range out with pread, so one file serves several threads at once: it is
// thread-safe. Every error message starts with the path.
#ifndef CALIB_CLIENT_READ_ONLY_FILE_H_
#define CALIB_CLIENT_READ_ONLY_FILE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace calib {

class ReadOnlyFile {
 public:
  // NOT_FOUND, PERMISSION_DENIED, or INVALID_ARGUMENT (a directory or other non-file).
  static absl::StatusOr<std::unique_ptr<ReadOnlyFile>> Open(const std::string& path);
  ~ReadOnlyFile();
  ReadOnlyFile(const ReadOnlyFile&) = delete;
  ReadOnlyFile& operator=(const ReadOnlyFile&) = delete;

  // The size when opened.
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Copies bytes [offset, offset + n) to dst; DATA_LOSS if the file ends first (it
  // shrank since Open).
  absl::Status Read(uint64_t offset, uint64_t n, char* dst) const;

  // The whole file, for callers that parse all of it.
  absl::StatusOr<std::string> ReadAll() const;

 private:
  ReadOnlyFile(std::string path, int fd, uint64_t size)
      : path_(std::move(path)), fd_(fd), size_(size) {}

  const std::string path_;
  const int fd_;
  const uint64_t size_;
};

}  // namespace calib

#endif  // CALIB_CLIENT_READ_ONLY_FILE_H_
