// ReliabilitySvg draws a Report's equal-width reliability bins as a standalone SVG 1.1
// figure (no scripts, no external fonts, a fixed viewBox): per panel, a bar of accuracy
// per non-empty bin (class="bar") against the diagonal, the gap to the bin's mean
// confidence hatched, Clopper-Pearson error bars, a square-root-scaled histogram of the
// counts with their values, and a box of ECE / MCE / NLL (and smooth ECE when present).
// One panel for the raw predictions, then one per fit in the Report (temperature, then
// Platt). Pure function, thread-safe.
#ifndef CALIB_CLIENT_RELIABILITY_SVG_H_
#define CALIB_CLIENT_RELIABILITY_SVG_H_

#include <string>

#include "calib/v1/calibration.pb.h"

namespace calib {

// What the Report alone cannot tell.
struct ReliabilityPlotOptions {
  // SIGMOID bins of p against the target: the axes read "predicted probability" and
  // "fraction of positives" rather than "confidence" and "accuracy".
  bool positive_class = false;
  double confidence_level = 0.95;  // of the bins' accuracy intervals, for the key
  std::string source;              // named in the subtitle, e.g. the logits file
};

std::string ReliabilitySvg(const v1::Report& report,
                           const ReliabilityPlotOptions& options);

}  // namespace calib

#endif  // CALIB_CLIENT_RELIABILITY_SVG_H_
