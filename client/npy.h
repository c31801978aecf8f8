// ReadNpy reads the header of a NumPy .npy file (format versions 1, 2 and 3) and returns
// its array, whose data stays in the file to be read range by range. Accepted dtypes
// are the ones a Tensor carries: '<f4', '<f8', '<f2', '<i4', '<i8', '|u1', '|b1' (read
// as uint8 0/1) and bfloat16, which np.save writes as the 2-byte void '<V2' (ml_dtypes
// has no dtype code of its own). Big-endian, Fortran-order, structured and object
// arrays are refused with an error naming the file. Thread-safe.
#ifndef CALIB_CLIENT_NPY_H_
#define CALIB_CLIENT_NPY_H_

#include <string>

#include "absl/status/statusor.h"
#include "client/array.h"

namespace calib {

// INVALID_ARGUMENT for a file that is not a .npy this reader accepts, NOT_FOUND or
// PERMISSION_DENIED etc. when it cannot be opened; every message starts with the path.
absl::StatusOr<Array> ReadNpy(const std::string& path);

}  // namespace calib

#endif  // CALIB_CLIENT_NPY_H_
