#include "client/report_table.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace calib {
namespace {

using MetricGetter = std::function<std::optional<double>(const v1::Metrics&)>;

std::string Number(double value) { return absl::StrFormat("%.6f", value); }

std::optional<double> TopK(const v1::Metrics& m, uint32_t k) {
  for (const v1::TopKAccuracy& t : m.top_k()) {
    if (t.k() == k) return t.accuracy();
  }
  return std::nullopt;
}

// One line per metric, one column per set of predictions (raw, then each fit).
void AppendMetrics(const std::vector<std::pair<std::string, const v1::Metrics*>>& sets,
                   std::string* out) {
  absl::StrAppendFormat(out, "%-18s", "");
  for (const auto& [name, metrics] : sets) absl::StrAppendFormat(out, " %14s", name);
  out->append("\n");
  auto row = [&](const std::string& label, const MetricGetter& get) {
    std::string line = absl::StrFormat("%-18s", label);
    bool any = false;
    for (const auto& set : sets) {
      const std::optional<double> value = get(*set.second);
      any |= value.has_value();
      absl::StrAppendFormat(&line, " %14s", value ? Number(*value) : "");
    }
    if (any) absl::StrAppend(out, line, "\n");
  };
  const v1::Metrics& raw = *sets.front().second;
  row("accuracy", [](const v1::Metrics& m) { return m.accuracy(); });
  for (const v1::TopKAccuracy& t : raw.top_k()) {
    row(absl::StrCat("top-", t.k(), " accuracy"),
        [k = t.k()](const v1::Metrics& m) { return TopK(m, k); });
  }
  row("nll", [](const v1::Metrics& m) { return m.nll(); });
  row("brier", [](const v1::Metrics& m) { return m.brier(); });
  row("ece", [](const v1::Metrics& m) { return m.ece(); });
  row("mce", [](const v1::Metrics& m) { return m.mce(); });
  row("rms_ce", [](const v1::Metrics& m) { return m.rms_ce(); });
  row("debiased_rms_ce", [](const v1::Metrics& m) { return m.debiased_rms_ce(); });
  row("ece_equal_mass", [](const v1::Metrics& m) { return m.ece_equal_mass(); });
  row("classwise_ece", [](const v1::Metrics& m) -> std::optional<double> {
    if (!m.has_classwise_ece()) return std::nullopt;
    return m.classwise_ece();
  });
  row("smooth_ece", [](const v1::Metrics& m) -> std::optional<double> {
    if (!m.has_smooth_ece()) return std::nullopt;
    return m.smooth_ece();
  });
  row("mean_confidence", [](const v1::Metrics& m) { return m.mean_confidence(); });
  row("mean_entropy", [](const v1::Metrics& m) { return m.mean_entropy(); });
}

void AppendBins(const v1::Metrics& metrics, std::string* out) {
  absl::StrAppendFormat(out, "\nreliability (%d equal-width bins)\n",
                        metrics.reliability_bins_size());
  absl::StrAppendFormat(out, "%-17s %8s %10s %9s %21s %10s\n", "confidence range",
                        "count", "confidence", "accuracy", "accuracy CP interval",
                        "acc - conf");
  for (const v1::ReliabilityBin& bin : metrics.reliability_bins()) {
    const std::string range = absl::StrFormat("%.4f - %.4f", bin.lower(), bin.upper());
    if (bin.count() == 0) {
      absl::StrAppendFormat(out, "%-17s %8d %10s %9s %21s %10s\n", range, 0, "-", "-",
                            "-", "-");
      continue;
    }
    absl::StrAppendFormat(
        out, "%-17s %8d %10.6f %9.6f %21s %+10.6f\n", range, bin.count(),
        bin.mean_confidence(), bin.accuracy(),
        absl::StrFormat("[%.6f, %.6f]", bin.accuracy_lower(), bin.accuracy_upper()),
        bin.accuracy() - bin.mean_confidence());
  }
}

// Text cells per unit of accuracy in the chart; with the marker's cell at 1.0, a line
// stays within 80 columns.
constexpr int kChartCells = 40;

int Cell(double value) {
  return static_cast<int>(std::lround(std::clamp(value, 0.0, 1.0) * kChartCells));
}

// The reliability diagram in text, one line per non-empty bin: full blocks up to the
// lower of accuracy and mean confidence, shade over the gap between them, and a bar at
// the mean confidence. Overconfident bins read "███░░┃", underconfident ones "███┃░░".
void AppendChart(const v1::Metrics& metrics, std::string* out) {
  absl::StrAppendFormat(out, "\n%-17s %8s  %s\n", "confidence range", "count",
                        "█ accuracy  ░ gap  ┃ mean confidence");
  for (const v1::ReliabilityBin& bin : metrics.reliability_bins()) {
    if (bin.count() == 0) continue;
    const int accuracy = Cell(bin.accuracy()), confidence = Cell(bin.mean_confidence());
    std::string bar;
    for (int i = 0; i <= std::max(accuracy, confidence); ++i) {
      if (i == confidence) {
        bar += "┃";
      } else if (i < std::min(accuracy, confidence)) {
        bar += "█";
      } else if (i < std::max(accuracy, confidence)) {
        bar += "░";
      }
    }
    absl::StrAppendFormat(out, "%-17s %8d  %s\n",
                          absl::StrFormat("%.4f - %.4f", bin.lower(), bin.upper()),
                          bin.count(), bar);
  }
  constexpr std::pair<int, std::string_view> kTicks[] = {{0, "0"},
                                                         {kChartCells / 4, "0.25"},
                                                         {kChartCells / 2, "0.5"},
                                                         {3 * kChartCells / 4, "0.75"},
                                                         {kChartCells, "1"}};
  std::string axis(kChartCells + 1, ' ');
  for (const auto& [cell, label] : kTicks) axis.replace(cell, label.size(), label);
  absl::StrAppendFormat(out, "%-17s %8s  %s\n", "", "", axis);
}

}  // namespace

std::string FormatReportTable(const v1::Report& report) {
  const v1::Metrics& raw = report.metrics();
  std::string out = absl::StrFormat("samples %d (ignored %d)\n\n", raw.num_samples(),
                                    report.num_ignored());
  std::vector<std::pair<std::string, const v1::Metrics*>> sets = {{"raw", &raw}};
  if (report.has_temperature_scaling()) {
    sets.emplace_back("temperature", &report.temperature_scaling().calibrated());
  }
  if (report.has_platt_scaling()) {
    sets.emplace_back("platt", &report.platt_scaling().calibrated());
  }
  AppendMetrics(sets, &out);

  if (report.has_temperature_scaling()) {
    const v1::TemperatureScaling& t = report.temperature_scaling();
    absl::StrAppendFormat(&out,
                          "\ntemperature %.6g (%d iterations, %s, fit on %d samples)\n",
                          t.temperature(), t.iterations(),
                          t.converged() ? "converged" : "NOT converged", t.fit_samples());
  }
  if (report.has_platt_scaling()) {
    const v1::PlattScaling& p = report.platt_scaling();
    absl::StrAppendFormat(
        &out, "%splatt slope %.6g, intercept %.6g (%d iterations, %s)\n",
        report.has_temperature_scaling() ? "" : "\n", p.slope(), p.intercept(),
        p.iterations(), p.converged() ? "converged" : "NOT converged");
  }
  if (report.has_intervals()) {
    const v1::BootstrapIntervals& b = report.intervals();
    absl::StrAppendFormat(&out, "\nbootstrap %g%% intervals (%d samples)\n",
                          100 * b.level(), b.samples());
    const std::pair<const char*, const v1::Interval*> intervals[] = {
        {"ece", &b.ece()},
        {"nll", &b.nll()},
        {"accuracy", &b.accuracy()},
        {"brier", &b.brier()}};
    for (const auto& [name, interval] : intervals) {
      absl::StrAppendFormat(&out, "%-18s [%s, %s]\n", name, Number(interval->lower()),
                            Number(interval->upper()));
    }
  }
  AppendBins(raw, &out);
  AppendChart(raw, &out);
  if (!report.warnings().empty()) out.append("\n");
  for (const std::string& warning : report.warnings()) {
    absl::StrAppend(&out, "warning: ", warning, "\n");
  }
  return out;
}

}  // namespace calib
