// Options: an EvaluationConfig with every default resolved and every field validated.
// ResolveOptions is the one place that reads a config; the rest of the engine reads
// Options. Plain value type, safe to share between threads once built.
#ifndef CALIB_SRC_OPTIONS_H_
#define CALIB_SRC_OPTIONS_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "calib/v1/calibration.pb.h"

namespace calib {

// What a sample is (metrics.md, "Modes").
enum class Mode {
  kSoftmax,     // C >= 2, a row with one class index
  kBinary,      // SIGMOID, C = 1
  kMultiLabel,  // SIGMOID, C = K >= 2, a sample per (row, label) element
};

inline constexpr uint32_t kDefaultBins = 15;
inline constexpr uint32_t kMaxBins = 10000;
inline constexpr double kDefaultConfidenceLevel = 0.95;

struct Options {
  Mode mode = Mode::kSoftmax;
  uint32_t num_classes = 0;
  v1::InputKind input_kind = v1::INPUT_KIND_LOGITS;  // never UNSPECIFIED
  uint32_t num_bins = kDefaultBins;
  std::optional<int64_t> ignore_index;
  std::vector<uint32_t> top_k;  // as asked, in the asked order
  bool classwise = false;
  bool fit_temperature = false;
  bool smooth_ece = false;
  uint32_t bootstrap_samples = 0;
  double confidence_level = kDefaultConfidenceLevel;
  uint64_t seed = 0;
  uint64_t expected_rows = 0;  // the config's hint, 0 when unknown
  bool left_closed = false;    // BIN_EDGES_LEFT_CLOSED
  bool top_label = false;      // BINARY_RELIABILITY_TOP_LABEL (binary SIGMOID only)

  bool sigmoid() const { return mode != Mode::kSoftmax; }
  // Samples per row: 1, or K for multi-label.
  uint32_t samples_per_row() const { return mode == Mode::kMultiLabel ? num_classes : 1; }
};

// INVALID_ARGUMENT naming the field and its value for: num_classes 0, an unknown enum
// value, SOFTMAX with one class, num_bins over kMaxBins, top_k of 0 or over C or with
// SIGMOID, confidence_level outside (0, 1).
absl::StatusOr<Options> ResolveOptions(const v1::EvaluationConfig& config);

}  // namespace calib

#endif  // CALIB_SRC_OPTIONS_H_
