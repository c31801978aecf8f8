// MapFile maps a whole regular file read-only into memory, so that readers can hand its
// bytes on without copying them. The mapping lives as long as any copy of `storage`.
// Thread-safe: it touches nothing but the file.
#ifndef CALIB_CLIENT_MAPPED_FILE_H_
#define CALIB_CLIENT_MAPPED_FILE_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace calib {

struct MappedFile {
  std::string_view contents;
  std::shared_ptr<const void> storage;  // unmaps when the last copy goes
};

// NOT_FOUND, PERMISSION_DENIED, or INVALID_ARGUMENT (a directory or other non-file);
// messages start with the path. An empty file maps to empty contents.
absl::StatusOr<MappedFile> MapFile(const std::string& path);

}  // namespace calib

#endif  // CALIB_CLIENT_MAPPED_FILE_H_
