// The two Status helpers Abseil 20220623 lacks. CALIB_RETURN_IF_ERROR(expr) returns the
// status of expr from the enclosing function when it is not OK; CALIB_ASSIGN_OR_RETURN(
// lhs, expr) does the same for a StatusOr and otherwise moves its value into lhs.
#ifndef CALIB_SRC_STATUS_MACROS_H_
#define CALIB_SRC_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define CALIB_RETURN_IF_ERROR(expr)                                 \
  do {                                                              \
    if (absl::Status calib_status_ = (expr); !calib_status_.ok()) { \
      return calib_status_;                                         \
    }                                                               \
  } while (false)

#define CALIB_STATUS_CONCAT_INNER_(a, b) a##b
#define CALIB_STATUS_CONCAT_(a, b) CALIB_STATUS_CONCAT_INNER_(a, b)

#define CALIB_ASSIGN_OR_RETURN(lhs, expr) \
  CALIB_ASSIGN_OR_RETURN_IMPL_(CALIB_STATUS_CONCAT_(calib_statusor_, __LINE__), lhs, expr)

#define CALIB_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)  \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // CALIB_SRC_STATUS_MACROS_H_
