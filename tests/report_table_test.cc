#include "client/report_table.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace calib {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Repeat(const std::string& text, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += text;
  return out;
}

v1::Report SoftmaxReport() {
  v1::Report report;
  report.set_num_ignored(7);
  v1::Metrics* m = report.mutable_metrics();
  m->set_num_samples(1234);
  m->set_accuracy(0.8125);
  m->set_nll(0.4567891);
  m->set_brier(0.2718281);
  m->set_ece(0.0314159);
  m->set_mce(0.2);
  m->set_rms_ce(0.05);
  m->set_debiased_rms_ce(0.04);
  m->set_ece_equal_mass(0.0333333);
  m->set_mean_confidence(0.84);
  m->set_mean_entropy(0.5);
  v1::TopKAccuracy* top5 = m->add_top_k();
  top5->set_k(5);
  top5->set_accuracy(0.975);
  v1::ReliabilityBin* empty = m->add_reliability_bins();
  empty->set_upper(0.5);
  v1::ReliabilityBin* full = m->add_reliability_bins();
  full->set_lower(0.5);
  full->set_upper(1.0);
  full->set_count(1234);
  full->set_mean_confidence(0.84);
  full->set_accuracy(0.8125);
  full->set_accuracy_lower(0.79);
  full->set_accuracy_upper(0.83);
  return report;
}

TEST(ReportTableTest, SummaryHoldsEveryMetric) {
  const std::string table = FormatReportTable(SoftmaxReport());
  EXPECT_THAT(table, HasSubstr("samples 1234 (ignored 7)"));
  EXPECT_THAT(table, ContainsRegex("accuracy +0\\.812500\n"));
  EXPECT_THAT(table, ContainsRegex("top-5 accuracy +0\\.975000\n"));
  EXPECT_THAT(table, ContainsRegex("nll +0\\.456789\n"));
  EXPECT_THAT(table, ContainsRegex("brier +0\\.271828\n"));
  EXPECT_THAT(table, ContainsRegex("ece +0\\.031416\n"));
  EXPECT_THAT(table, ContainsRegex("mce +0\\.200000\n"));
  EXPECT_THAT(table, ContainsRegex("rms_ce +0\\.050000\n"));
  EXPECT_THAT(table, ContainsRegex("debiased_rms_ce +0\\.040000\n"));
  EXPECT_THAT(table, ContainsRegex("ece_equal_mass +0\\.033333\n"));
  EXPECT_THAT(table, ContainsRegex("mean_confidence +0\\.840000\n"));
  EXPECT_THAT(table, ContainsRegex("mean_entropy +0\\.500000\n"));
  // Optional metrics that were not asked for are not shown.
  EXPECT_THAT(table, Not(HasSubstr("classwise_ece")));
  EXPECT_THAT(table, Not(HasSubstr("smooth_ece")));
  EXPECT_THAT(table, Not(HasSubstr("temperature")));
}

TEST(ReportTableTest, OptionalMetricsShowWhenSetEvenAtZero) {
  v1::Report report = SoftmaxReport();
  report.mutable_metrics()->set_classwise_ece(0.0123456);
  report.mutable_metrics()->set_smooth_ece(0);
  const std::string table = FormatReportTable(report);
  EXPECT_THAT(table, ContainsRegex("classwise_ece +0\\.012346\n"));
  EXPECT_THAT(table, ContainsRegex("smooth_ece +0\\.000000\n"));
}

TEST(ReportTableTest, BinsShowCountsAccuracyIntervalAndGap) {
  const std::string table = FormatReportTable(SoftmaxReport());
  EXPECT_THAT(table, HasSubstr("reliability (2 equal-width bins)"));
  EXPECT_THAT(table, ContainsRegex("0\\.0000 - 0\\.5000 +0 +- +- +- +-\n"));
  // The gap is accuracy - confidence: 0.8125 - 0.84.
  EXPECT_THAT(table, ContainsRegex("0\\.5000 - 1\\.0000 +1234 +0\\.840000 +0\\.812500 +"
                                   "\\[0\\.790000, 0\\.830000\\] +-0\\.027500\n"));
}

// Counts code points, which is what a terminal lays out for these characters.
size_t Columns(const std::string& line) {
  return std::count_if(line.begin(), line.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  });
}

TEST(ReportTableTest, ChartDrawsEachNonEmptyBinWithinEightyColumns) {
  v1::Report report = SoftmaxReport();
  // An underconfident bin beside the overconfident one: accuracy 0.5 (20 of the 40
  // cells), mean confidence 0.25 (cell 10).
  v1::ReliabilityBin* low = report.mutable_metrics()->mutable_reliability_bins(0);
  low->set_count(3);
  low->set_mean_confidence(0.25);
  low->set_accuracy(0.5);
  const std::string table = FormatReportTable(report);
  const std::string overconfident =
      "0.5000 - 1.0000       1234  " + Repeat("█", 33) + "░┃\n";  // 32.5 and 33.6 cells
  const std::string underconfident =
      "0.0000 - 0.5000          3  " + Repeat("█", 10) + "┃" + Repeat("░", 9) + "\n";
  EXPECT_THAT(table, HasSubstr(underconfident));
  EXPECT_THAT(table, HasSubstr(overconfident));
  EXPECT_THAT(table, HasSubstr("█ accuracy  ░ gap  ┃ mean confidence\n"));
  EXPECT_THAT(table, HasSubstr("  0         0.25      0.5       0.75      1\n"));
  for (absl::string_view line : absl::StrSplit(table, '\n')) {
    EXPECT_LE(Columns(std::string(line)), 80u) << line;
  }
}

TEST(ReportTableTest, ChartLeavesOutEmptyBins) {
  const std::string table = FormatReportTable(SoftmaxReport());
  const size_t chart = table.find("█ accuracy");
  ASSERT_NE(chart, std::string::npos);
  EXPECT_THAT(table.substr(chart), Not(HasSubstr("0.0000 - 0.5000")));
  EXPECT_THAT(table.substr(chart), HasSubstr("0.5000 - 1.0000"));
}

TEST(ReportTableTest, FitsSitBesideTheRawMetrics) {
  v1::Report report = SoftmaxReport();
  v1::TemperatureScaling* t = report.mutable_temperature_scaling();
  t->set_temperature(1.73205);
  t->set_iterations(6);
  t->set_converged(true);
  t->set_fit_samples(1234);
  t->mutable_calibrated()->set_accuracy(0.8125);
  t->mutable_calibrated()->set_nll(0.3999999);
  t->mutable_calibrated()->set_ece(0.0111111);
  t->mutable_calibrated()->add_top_k()->set_k(5);
  t->mutable_calibrated()->mutable_top_k(0)->set_accuracy(0.975);
  v1::PlattScaling* p = report.mutable_platt_scaling();
  p->set_slope(0.5);
  p->set_intercept(-0.25);
  p->set_iterations(9);
  p->set_converged(false);
  p->mutable_calibrated()->set_nll(0.42);
  report.add_warnings("the logits look like probabilities");
  const std::string table = FormatReportTable(report);
  EXPECT_THAT(table, ContainsRegex("raw +temperature +platt\n"));
  EXPECT_THAT(table, ContainsRegex("nll +0\\.456789 +0\\.400000 +0\\.420000\n"));
  EXPECT_THAT(table, ContainsRegex("ece +0\\.031416 +0\\.011111 +0\\.000000\n"));
  // Platt (SIGMOID) has no top-k: its cell stays empty.
  EXPECT_THAT(table, ContainsRegex("top-5 accuracy +0\\.975000 +0\\.975000 +\n"));
  EXPECT_THAT(table, HasSubstr("temperature 1.73205 (6 iterations, converged, fit on "
                               "1234 samples)"));
  EXPECT_THAT(
      table, HasSubstr("platt slope 0.5, intercept -0.25 (9 iterations, NOT converged)"));
  EXPECT_THAT(table, HasSubstr("warning: the logits look like probabilities\n"));
}

TEST(ReportTableTest, BootstrapIntervals) {
  v1::Report report = SoftmaxReport();
  v1::BootstrapIntervals* b = report.mutable_intervals();
  b->set_level(0.9);
  b->set_samples(200);
  b->mutable_ece()->set_lower(0.021);
  b->mutable_ece()->set_upper(0.041);
  b->mutable_nll()->set_lower(0.4);
  b->mutable_nll()->set_upper(0.5);
  const std::string table = FormatReportTable(report);
  EXPECT_THAT(table, HasSubstr("bootstrap 90% intervals (200 samples)"));
  EXPECT_THAT(table, ContainsRegex("ece +\\[0\\.021000, 0\\.041000\\]\n"));
  EXPECT_THAT(table, ContainsRegex("nll +\\[0\\.400000, 0\\.500000\\]\n"));
}

}  // namespace
}  // namespace calib
