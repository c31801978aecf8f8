// The temperature fit (metrics.md, "Temperature scaling"): minimises the mean NLL of
// beta * z over beta = 1/T by a safeguarded Newton iteration on log beta, over
// T in [1e-12, 1e12]. The data is seen only through `eval`, which computes one pass.
// Pure function of `eval`, thread-safe if `eval` is.
#ifndef CALIB_SRC_TEMPERATURE_FIT_H_
#define CALIB_SRC_TEMPERATURE_FIT_H_

#include <cstdint>
#include <functional>
#include <optional>

namespace calib {

inline constexpr double kMinTemperature = 1e-12;
inline constexpr double kMaxTemperature = 1e12;

// Mean NLL at beta and its first two derivatives with respect to beta.
struct NllDerivatives {
  double value = 0;
  double d1 = 0;  // mean (E_p[z] - z_y)          (SIGMOID: mean (p - y) z)
  double d2 = 0;  // mean Var_p[z] >= 0           (SIGMOID: mean p (1 - p) z^2)
};

struct TemperatureFitResult {
  // Where the infimum lies when it is not inside the range.
  enum class End {
    kInside,
    kZero,      // NLL keeps falling as T -> 0: T = kMinTemperature
    kInfinity,  // NLL keeps falling as T -> infinity: T = kMaxTemperature
  };
  double temperature = 1;
  uint32_t iterations = 0;  // calls of eval
  bool converged = false;   // false at an end
  End end = End::kInside;
};

// `at_one`, when given, is what eval(1) would return (the raw metrics' pass computed it
// alongside): the fit starts from it instead of calling eval(1), and counts it among
// the iterations all the same.
TemperatureFitResult FitTemperature(
    const std::function<NllDerivatives(double beta)>& eval,
    std::optional<NllDerivatives> at_one = std::nullopt);

}  // namespace calib

#endif  // CALIB_SRC_TEMPERATURE_FIT_H_
