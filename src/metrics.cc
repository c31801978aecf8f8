#include "src/metrics.h"

#include "absl/types/span.h"
#include "src/smooth_ece.h"

namespace calib {

void BuildMetrics(const Options& options, const Sums& sums,
                  absl::Span<ConfidenceSample> samples, v1::Metrics* out) {
  const double n = static_cast<double>(sums.samples);
  out->set_num_samples(sums.samples);
  out->set_accuracy(static_cast<double>(sums.correct) / n);
  out->set_nll(sums.nll / n);
  out->set_brier(sums.brier / n);
  out->set_mean_confidence(sums.confidence / n);
  out->set_mean_entropy(sums.entropy / n);
  if (!options.sigmoid()) {
    for (size_t i = 0; i < options.top_k.size(); ++i) {
      v1::TopKAccuracy* top = out->add_top_k();
      top->set_k(options.top_k[i]);
      top->set_accuracy(static_cast<double>(sums.top_k[i]) / n);
    }
  }

  const CalibrationErrors errors = ComputeErrors(sums.bins);
  out->set_ece(errors.ece);
  out->set_mce(errors.mce);
  out->set_rms_ce(errors.rms_ce);
  out->set_debiased_rms_ce(errors.debiased_rms_ce);
  AppendEqualWidthBins(sums.bins, options.confidence_level,
                       out->mutable_reliability_bins());

  const CalibrationErrors mass =
      AppendEqualMassBins(samples, options.num_bins, options.confidence_level,
                          out->mutable_equal_mass_bins());
  out->set_ece_equal_mass(mass.ece);
  if (options.smooth_ece) out->set_smooth_ece(SmoothEce(samples));

  if (options.classwise) {
    // Mean over the classes (labels) that have samples; for SOFTMAX that is all.
    const absl::Span<const BinSums> all(sums.class_bins);
    double total = 0;
    int classes = 0;
    for (uint32_t k = 0; k < options.num_classes; ++k) {
      const auto bins = all.subspan(size_t{k} * options.num_bins, options.num_bins);
      uint64_t count = 0;
      for (const BinSums& b : bins) count += b.count;
      if (count == 0) continue;
      total += ComputeErrors(bins).ece;
      ++classes;
    }
    out->set_classwise_ece(total / classes);
  }
}

}  // namespace calib
