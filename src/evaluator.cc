#include "src/evaluator.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "src/block_accumulator.h"
#include "src/labels.h"
#include "src/metrics.h"
#include "src/platt_fit.h"
#include "src/row_kernel.h"
#include "src/status_macros.h"
#include "src/temperature_fit.h"
#include "src/tensor.h"

namespace calib {
namespace {

class EvaluatorImpl final : public Evaluator {
 public:
  explicit EvaluatorImpl(const Options& options)
      : options_(options), kernel_(options), accumulator_(options) {}

  absl::Status Add(TensorView logits, TensorView labels) override {
    if (spent_) return Spent();
    absl::Status status = AddImpl(logits, labels);
    if (!status.ok()) spent_ = true;
    return status;
  }

  absl::StatusOr<v1::Report> Finish() override {
    if (spent_) return Spent();
    spent_ = true;
    return FinishImpl();
  }

  const Options& options() const override { return options_; }
  uint64_t rows() const override { return accumulator_.rows(); }

 private:
  static absl::Status Spent() {
    return absl::FailedPreconditionError(
        "this evaluation already ended (finished or failed)");
  }

  absl::Status AddImpl(TensorView logits, TensorView labels);
  absl::StatusOr<v1::Report> FinishImpl();
  // Every figure of `metrics` on the stored rows mapped by `affine`.
  void Recompute(Affine affine, v1::Metrics* metrics);

  RowSource Stored() const {
    return {logits_dtype_, stored_logits_.data(), stored_labels_.data(),
            accumulator_.rows(), 0};
  }

  const Options options_;
  const RowKernel kernel_;
  BlockAccumulator accumulator_;
  bool spent_ = false;
  uint64_t ignored_ = 0;
  v1::DType logits_dtype_ = v1::DTYPE_UNSPECIFIED;  // fixed by the first non-empty batch
  std::vector<int32_t> labels_;                     // the current batch's, reused
  // The rows kept for the fits (fit_temperature only), as received.
  std::string stored_logits_;
  std::vector<int32_t> stored_labels_;
};

absl::Status EvaluatorImpl::AddImpl(TensorView logits, TensorView labels) {
  const v1::DType dtype = LogitsDType(logits.dtype);
  if (!IsFloatDType(dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch.logits.dtype is ", DTypeName(dtype), " (", static_cast<int>(logits.dtype),
        "); logits take float32, float64, float16 or bfloat16"));
  }
  const uint64_t row_bytes = uint64_t{options_.num_classes} * DTypeSize(dtype);
  if (logits.data.size() % row_bytes != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch.logits holds ", logits.data.size(),
                     " bytes, not a whole number of rows of ", options_.num_classes, " ",
                     DTypeName(dtype), " values (", row_bytes, " bytes per row)"));
  }
  const uint64_t rows = logits.data.size() / row_bytes;
  if (rows > 0 && logits_dtype_ != v1::DTYPE_UNSPECIFIED && dtype != logits_dtype_) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch.logits.dtype changed from ", DTypeName(logits_dtype_), " to ",
                     DTypeName(dtype), " at row ", accumulator_.rows(),
                     "; one evaluation keeps one dtype"));
  }

  uint64_t good_rows = 0;
  absl::Status label_status =
      DecodeLabels(options_, labels, rows, accumulator_.rows(), &labels_, &good_rows);
  RowSource src{dtype, logits.data.data(), labels_.data(), rows, accumulator_.rows()};
  if (!label_status.ok()) {
    // Report whichever comes first: this label, or a bad logit in an earlier row.
    src.rows = good_rows;
    CALIB_RETURN_IF_ERROR(accumulator_.Add(src, Affine{}));
    return label_status;
  }
  if (rows == 0) return absl::OkStatus();
  logits_dtype_ = dtype;
  CALIB_RETURN_IF_ERROR(accumulator_.Add(src, Affine{}));
  for (int32_t label : labels_) ignored_ += label == kIgnoredLabel;
  if (options_.fit_temperature) {
    stored_logits_.append(logits.data);
    stored_labels_.insert(stored_labels_.end(), labels_.begin(), labels_.end());
  }
  return absl::OkStatus();
}

void EvaluatorImpl::Recompute(Affine affine, v1::Metrics* metrics) {
  // The bootstrap intervals are of the raw figures only.
  Options options = options_;
  options.bootstrap_samples = 0;
  BlockAccumulator again(options);
  // The stored rows passed validation when they arrived.
  (void)again.Add(Stored(), affine);
  const Sums sums = again.Finish();
  BuildMetrics(options, sums, again.samples(), metrics);
}

absl::StatusOr<v1::Report> EvaluatorImpl::FinishImpl() {
  const Sums sums = accumulator_.Finish();
  if (sums.samples == 0) {
    return absl::InvalidArgumentError(
        accumulator_.rows() == 0
            ? std::string("no samples: the evaluation received no rows")
            : absl::StrCat("no samples: every label of the ", accumulator_.rows(),
                           " rows equals ignore_index ",
                           options_.ignore_index.value_or(0)));
  }
  v1::Report report;
  BuildMetrics(options_, sums, accumulator_.samples(), report.mutable_metrics());
  report.set_num_ignored(ignored_);
  if (options_.bootstrap_samples > 0) {
    *report.mutable_intervals() = sums.replicates.Intervals(options_.confidence_level);
  }

  if (options_.input_kind == v1::INPUT_KIND_LOGITS && sums.looks_like_probabilities) {
    report.add_warnings(absl::StrCat(
        "every value looks like a probability (all in [0, 1]",
        options_.sigmoid() ? "" : " and every row sums to 1",
        ") but input_kind is LOGITS: were probabilities passed where logits were "
        "expected, as with a softmax layer before CrossEntropyLoss? If so, use "
        "input_kind "
        "PROBABILITIES (calib eval --input probabilities). The figures were computed as "
        "asked."));
  }
  if (options_.sigmoid() && !options_.top_k.empty()) {
    report.add_warnings("top_k was ignored: top-k accuracy is defined for SOFTMAX only");
  }

  if (options_.fit_temperature) {
    const RowSource stored = Stored();
    const double n = static_cast<double>(sums.samples);
    const TemperatureFitResult fit = FitTemperature([&](double beta) {
      NllDerivatives d = ReduceBlocks<NllDerivatives>(
          stored.rows,
          [&](uint64_t begin, uint64_t end) {
            return kernel_.TemperatureTerms(stored, begin, end, beta);
          },
          [](NllDerivatives& total, const NllDerivatives& part) {
            total.value += part.value;
            total.d1 += part.d1;
            total.d2 += part.d2;
          });
      return NllDerivatives{d.value / n, d.d1 / n, d.d2 / n};
    });
    v1::TemperatureScaling* ts = report.mutable_temperature_scaling();
    ts->set_temperature(fit.temperature);
    ts->set_iterations(fit.iterations);
    ts->set_converged(fit.converged);
    ts->set_fit_samples(sums.samples);
    Recompute({1 / fit.temperature, 0}, ts->mutable_calibrated());
    if (fit.end == TemperatureFitResult::End::kZero) {
      report.add_warnings(
          "temperature fit: every sample is predicted right with a margin, so the NLL "
          "keeps falling as T -> 0; returned the end of the range, T = 1e-12 "
          "(converged = false)");
    } else if (fit.end == TemperatureFitResult::End::kInfinity) {
      report.add_warnings(
          "temperature fit: the labels score below the average logit, so the NLL keeps "
          "falling as T grows; returned the end of the range, T = 1e12 "
          "(converged = false)");
    }

    if (options_.sigmoid()) {
      const PlattFitResult platt = FitPlatt([&](double a, double b) {
        PlattDerivatives d = ReduceBlocks<PlattDerivatives>(
            stored.rows,
            [&](uint64_t begin, uint64_t end) {
              return kernel_.PlattTerms(stored, begin, end, a, b);
            },
            [](PlattDerivatives& total, const PlattDerivatives& part) {
              total.value += part.value;
              total.ga += part.ga;
              total.gb += part.gb;
              total.haa += part.haa;
              total.hab += part.hab;
              total.hbb += part.hbb;
            });
        return PlattDerivatives{d.value / n, d.ga / n,  d.gb / n,
                                d.haa / n,   d.hab / n, d.hbb / n};
      });
      v1::PlattScaling* ps = report.mutable_platt_scaling();
      ps->set_slope(platt.slope);
      ps->set_intercept(platt.intercept);
      ps->set_iterations(platt.iterations);
      ps->set_converged(platt.converged);
      Recompute({platt.slope, platt.intercept}, ps->mutable_calibrated());
      if (!platt.converged) {
        report.add_warnings(
            "Platt fit did not converge: the classes may be separable by the logit, so "
            "the likelihood has no finite maximum");
      }
    }
  }
  return report;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Evaluator>> Evaluator::Create(
    const v1::EvaluationConfig& config) {
  CALIB_ASSIGN_OR_RETURN(Options options, ResolveOptions(config));
  return std::unique_ptr<Evaluator>(new EvaluatorImpl(options));
}

}  // namespace calib
