#include "src/options.h"

#include "absl/strings/str_cat.h"
#include "src/bootstrap.h"

namespace calib {
namespace {

absl::Status Bad(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("config.", field, " ", problem));
}

}  // namespace

absl::StatusOr<Options> ResolveOptions(const v1::EvaluationConfig& config) {
  Options o;
  if (config.num_classes() == 0) {
    return Bad("num_classes", "is 0; it must be the number of logits per row (>= 1)");
  }
  o.num_classes = config.num_classes();

  switch (config.activation()) {
    case v1::ACTIVATION_UNSPECIFIED:
      o.mode = o.num_classes > 1 ? Mode::kSoftmax : Mode::kBinary;
      break;
    case v1::ACTIVATION_SOFTMAX:
      if (o.num_classes < 2) {
        return Bad("num_classes",
                   "is 1, but SOFTMAX needs at least 2 classes (use SIGMOID for a "
                   "binary model with one logit)");
      }
      o.mode = Mode::kSoftmax;
      break;
    case v1::ACTIVATION_SIGMOID:
      o.mode = o.num_classes == 1 ? Mode::kBinary : Mode::kMultiLabel;
      break;
    default:
      return Bad("activation",
                 absl::StrCat("has the unknown value ", config.activation()));
  }

  switch (config.input_kind()) {
    case v1::INPUT_KIND_UNSPECIFIED:
    case v1::INPUT_KIND_LOGITS:
      o.input_kind = v1::INPUT_KIND_LOGITS;
      break;
    case v1::INPUT_KIND_PROBABILITIES:
    case v1::INPUT_KIND_LOG_PROBABILITIES:
      o.input_kind = config.input_kind();
      break;
    default:
      return Bad("input_kind",
                 absl::StrCat("has the unknown value ", config.input_kind()));
  }

  o.num_bins = config.num_bins() == 0 ? kDefaultBins : config.num_bins();
  if (o.num_bins > kMaxBins) {
    return Bad("num_bins", absl::StrCat("is ", config.num_bins(), "; at most ", kMaxBins,
                                        " allowed"));
  }

  if (config.has_ignore_index()) o.ignore_index = config.ignore_index();

  for (uint32_t k : config.top_k()) {
    if (k == 0 || k > o.num_classes) {
      return Bad("top_k",
                 absl::StrCat("holds ", k, "; each k must be in [1, num_classes = ",
                              o.num_classes, "]"));
    }
    o.top_k.push_back(k);
  }

  o.classwise = config.classwise();
  o.fit_temperature = config.fit_temperature();
  o.smooth_ece = config.smooth_ece();
  o.bootstrap_samples = config.bootstrap_samples();
  if (o.bootstrap_samples > kMaxBootstrapSamples) {
    return Bad("bootstrap_samples", absl::StrCat("is ", o.bootstrap_samples, "; at most ",
                                                 kMaxBootstrapSamples, " allowed"));
  }
  o.seed = config.seed();
  o.expected_rows = config.expected_rows();

  if (config.confidence_level() != 0) {
    const double level = config.confidence_level();
    if (!(level > 0 && level < 1)) {
      return Bad("confidence_level",
                 absl::StrCat("is ", level, "; it must lie strictly between 0 and 1"));
    }
    o.confidence_level = level;
  }

  switch (config.bin_edges()) {
    case v1::BIN_EDGES_UNSPECIFIED:
    case v1::BIN_EDGES_RIGHT_CLOSED:
      break;
    case v1::BIN_EDGES_LEFT_CLOSED:
      o.left_closed = true;
      break;
    default:
      return Bad("bin_edges", absl::StrCat("has the unknown value ", config.bin_edges()));
  }

  switch (config.binary_reliability()) {
    case v1::BINARY_RELIABILITY_UNSPECIFIED:
    case v1::BINARY_RELIABILITY_POSITIVE_CLASS:
      break;
    case v1::BINARY_RELIABILITY_TOP_LABEL:
      if (o.mode != Mode::kBinary) {
        return Bad(
            "binary_reliability",
            "is TOP_LABEL, which applies only to binary SIGMOID (num_classes = 1)");
      }
      o.top_label = true;
      break;
    default:
      return Bad("binary_reliability",
                 absl::StrCat("has the unknown value ", config.binary_reliability()));
  }
  return o;
}

}  // namespace calib
