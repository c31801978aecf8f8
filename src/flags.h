// A command-line flag parser shared by calibd and calib: `--name value` and
// `--name=value`, values may start with '-' (`--ignore-index -100`), and boolean flags
// take no value (`--classwise`) or an explicit one (`--reflection=false`).
// Not thread-safe; parse once in main().
#ifndef CALIB_SRC_FLAGS_H_
#define CALIB_SRC_FLAGS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace calib {

class Flags {
 public:
  // `value_flags` take a value, `bool_flags` may stand alone; any other `--x` is an
  // error naming it. Arguments that are not flags are kept as positionals.
  static absl::StatusOr<Flags> Parse(const std::vector<std::string>& args,
                                     const std::set<std::string>& value_flags,
                                     const std::set<std::string>& bool_flags);

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::optional<std::string> Get(const std::string& name) const;
  std::string GetOr(const std::string& name, const std::string& fallback) const;
  // Errors name the flag and the value that did not parse.
  absl::StatusOr<bool> GetBool(const std::string& name, bool fallback) const;
  absl::StatusOr<int64_t> GetInt(const std::string& name, int64_t fallback) const;
  absl::StatusOr<uint64_t> GetUint(const std::string& name, uint64_t fallback) const;
  absl::StatusOr<double> GetDouble(const std::string& name, double fallback) const;
  const std::vector<std::string>& positionals() const { return positionals_; }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positionals_;
};

}  // namespace calib

#endif  // CALIB_SRC_FLAGS_H_
