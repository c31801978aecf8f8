#include "src/flags.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace calib {

absl::StatusOr<Flags> Flags::Parse(const std::vector<std::string>& args,
                                   const std::set<std::string>& value_flags,
                                   const std::set<std::string>& bool_flags) {
  Flags flags;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 3 || arg.rfind("--", 0) != 0) {
      flags.positionals_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (value_flags.count(name)) {
      if (!value) {
        if (i + 1 >= args.size()) {
          return absl::InvalidArgumentError(
              absl::StrCat("flag --", name, " needs a value"));
        }
        value = args[++i];
      }
    } else if (bool_flags.count(name)) {
      if (!value) value = "true";
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    flags.values_[name] = *value;
  }
  return flags;
}

std::optional<std::string> Flags::Get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Flags::GetOr(const std::string& name, const std::string& fallback) const {
  return Get(name).value_or(fallback);
}

namespace {
absl::Status BadValue(const std::string& name, const std::string& value,
                      const char* what) {
  return absl::InvalidArgumentError(
      absl::StrCat("flag --", name, ": '", value, "' is not ", what));
}
}  // namespace

absl::StatusOr<bool> Flags::GetBool(const std::string& name, bool fallback) const {
  auto v = Get(name);
  if (!v) return fallback;
  bool out;
  if (!absl::SimpleAtob(*v, &out)) return BadValue(name, *v, "true or false");
  return out;
}

absl::StatusOr<int64_t> Flags::GetInt(const std::string& name, int64_t fallback) const {
  auto v = Get(name);
  if (!v) return fallback;
  int64_t out;
  if (!absl::SimpleAtoi(*v, &out)) return BadValue(name, *v, "an integer");
  return out;
}

absl::StatusOr<uint64_t> Flags::GetUint(const std::string& name,
                                        uint64_t fallback) const {
  auto v = Get(name);
  if (!v) return fallback;
  uint64_t out;
  if (v->empty() || (*v)[0] == '-' || !absl::SimpleAtoi(*v, &out)) {
    return BadValue(name, *v, "a non-negative integer");
  }
  return out;
}

absl::StatusOr<double> Flags::GetDouble(const std::string& name, double fallback) const {
  auto v = Get(name);
  if (!v) return fallback;
  double out;
  if (!absl::SimpleAtod(*v, &out)) return BadValue(name, *v, "a number");
  return out;
}

}  // namespace calib
