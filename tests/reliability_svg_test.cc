#include "client/reliability_svg.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace calib {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

int Occurrences(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos;
       at = text.find(what, at + what.size())) {
    ++n;
  }
  return n;
}

// A metric in the legend box: its name, then its value.
std::string Entry(const std::string& name, const std::string& value) {
  return ">" + name + "</tspan> " + value + "</text>";
}

void AddBin(v1::Metrics* m, double lower, double upper, uint64_t count, double confidence,
            double accuracy) {
  v1::ReliabilityBin* bin = m->add_reliability_bins();
  bin->set_lower(lower);
  bin->set_upper(upper);
  bin->set_count(count);
  bin->set_mean_confidence(confidence);
  bin->set_accuracy(accuracy);
  bin->set_accuracy_lower(count == 0 ? 0 : accuracy / 2);
  bin->set_accuracy_upper(count == 0 ? 0 : (1 + accuracy) / 2);
}

// Four bins of width 0.25, three of them non-empty.
void FillMetrics(v1::Metrics* m) {
  m->set_num_samples(100);
  m->set_accuracy(0.8);
  m->set_nll(0.4567891);
  m->set_ece(0.0314159);
  m->set_mce(0.2);
  AddBin(m, 0, 0.25, 0, 0, 0);
  AddBin(m, 0.25, 0.5, 2, 0.4, 0.5);
  AddBin(m, 0.5, 0.75, 8, 0.7, 0.5);
  AddBin(m, 0.75, 1, 90, 0.9, 0.8);
}

v1::Report OnePanelReport() {
  v1::Report report;
  FillMetrics(report.mutable_metrics());
  return report;
}

TEST(ReliabilitySvgTest, IsAStandaloneSvgDocument) {
  const std::string svg = ReliabilitySvg(OnePanelReport(), {});
  EXPECT_THAT(svg, StartsWith("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg "));
  EXPECT_THAT(svg, HasSubstr("xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\""));
  EXPECT_THAT(svg, HasSubstr("viewBox=\"0 0 420 "));
  EXPECT_THAT(svg, HasSubstr("font-family=\"sans-serif\""));
  EXPECT_THAT(svg, Not(HasSubstr("<script")));
  EXPECT_THAT(svg, Not(HasSubstr("href")));
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
}

TEST(ReliabilitySvgTest, OneBarPerNonEmptyBinSpanningTheBin) {
  const std::string svg = ReliabilitySvg(OnePanelReport(), {});
  EXPECT_EQ(Occurrences(svg, "class=\"panel\""), 1);
  EXPECT_EQ(Occurrences(svg, "class=\"bar\""), 3);
  EXPECT_EQ(Occurrences(svg, "class=\"gap\""), 3);
  EXPECT_EQ(Occurrences(svg, "class=\"interval\""), 3);
  EXPECT_EQ(Occurrences(svg, "class=\"count\""), 3);
  // The axes are 300 units square, their left edge at 10 + 70 and their top at 62 + 28:
  // the bin (0.75, 1] with accuracy 0.8 spans x 305..380 and y 150..390.
  EXPECT_THAT(svg, HasSubstr("<rect class=\"bar\" x=\"305.00\" y=\"150.00\" "
                             "width=\"75.00\" height=\"240.00\"/>"));
  // Its gap runs from the accuracy (y 150) up to the mean confidence 0.9 (y 120).
  EXPECT_THAT(svg, HasSubstr("<rect class=\"gap\" x=\"305.00\" y=\"120.00\" "
                             "width=\"75.00\" height=\"30.00\"/>"));
  // Its interval [0.4, 0.9] at the bin's centre, x = 342.5.
  EXPECT_THAT(svg, HasSubstr("<path class=\"interval\" d=\"M342.50 270.00V120.00"));
  // A single panel has no heading, and the diagonal runs corner to corner.
  EXPECT_THAT(svg, Not(HasSubstr("before scaling")));
  EXPECT_THAT(svg, HasSubstr("<line x1=\"80.0\" y1=\"390.0\" x2=\"380.0\" y2=\"90.0\""));
}

TEST(ReliabilitySvgTest, CountsAreShownOnASquareRootScale) {
  const std::string svg = ReliabilitySvg(OnePanelReport(), {});
  // The histogram's tallest bar (90 samples) is 62 - 12 units high; 8 samples get
  // sqrt(8 / 90) of that.
  EXPECT_THAT(svg, HasSubstr("<rect class=\"count\" x=\"305.00\" y=\"412.00\" "
                             "width=\"75.00\" height=\"50.00\"/>"));
  EXPECT_THAT(svg, HasSubstr("height=\"14.91\"/>"));
  EXPECT_THAT(svg, HasSubstr(">90</text>"));
  EXPECT_THAT(svg, HasSubstr(">8</text>"));
  EXPECT_THAT(svg, HasSubstr(">2</text>"));
}

TEST(ReliabilitySvgTest, LegendHoldsTheMetrics) {
  v1::Report report = OnePanelReport();
  std::string svg = ReliabilitySvg(report, {});
  EXPECT_THAT(svg, HasSubstr(Entry("ECE", "0.0314")));
  EXPECT_THAT(svg, HasSubstr(Entry("MCE", "0.2000")));
  EXPECT_THAT(svg, HasSubstr(Entry("NLL", "0.4568")));
  EXPECT_THAT(svg, HasSubstr(Entry("accuracy", "0.8000")));
  EXPECT_THAT(svg, Not(HasSubstr("smECE")));
  EXPECT_THAT(svg, HasSubstr(">95% Clopper-Pearson interval</text>"));

  report.mutable_metrics()->set_smooth_ece(0.0271828);
  report.mutable_metrics()->set_nll(3.3e6);
  ReliabilityPlotOptions options;
  options.confidence_level = 0.9;
  svg = ReliabilitySvg(report, options);
  EXPECT_THAT(svg, HasSubstr(Entry("smECE", "0.0272")));
  EXPECT_THAT(svg, HasSubstr(Entry("NLL", "3.3×10⁶")));
  EXPECT_THAT(svg, HasSubstr(">90% Clopper-Pearson interval</text>"));
}

TEST(ReliabilitySvgTest, APanelPerFit) {
  v1::Report report = OnePanelReport();
  v1::TemperatureScaling* t = report.mutable_temperature_scaling();
  t->set_temperature(1.2912);
  FillMetrics(t->mutable_calibrated());
  t->mutable_calibrated()->mutable_reliability_bins(1)->set_count(0);
  std::string svg = ReliabilitySvg(report, {});
  EXPECT_EQ(Occurrences(svg, "class=\"panel\""), 2);
  EXPECT_EQ(Occurrences(svg, "class=\"bar\""), 3 + 2);
  EXPECT_THAT(svg, HasSubstr(">before scaling</text>"));
  EXPECT_THAT(svg, HasSubstr(">after temperature scaling (T = 1.29)</text>"));
  EXPECT_THAT(svg, HasSubstr("viewBox=\"0 0 820 "));

  t->set_temperature(1.0234e8);
  v1::PlattScaling* p = report.mutable_platt_scaling();
  p->set_slope(0.684);
  p->set_intercept(-0.25);
  FillMetrics(p->mutable_calibrated());
  svg = ReliabilitySvg(report, {});
  EXPECT_EQ(Occurrences(svg, "class=\"panel\""), 3);
  EXPECT_EQ(Occurrences(svg, "class=\"bar\""), 3 + 2 + 3);
  EXPECT_THAT(svg, HasSubstr(">after temperature scaling (T = 1.02×10⁸)</text>"));
  EXPECT_THAT(svg, HasSubstr(">after Platt scaling (a = 0.684, b = -0.25)</text>"));
}

TEST(ReliabilitySvgTest, AxesNameTheBinaryPositiveClassConvention) {
  std::string svg = ReliabilitySvg(OnePanelReport(), {});
  EXPECT_THAT(svg, HasSubstr(">confidence</text>"));
  EXPECT_THAT(svg, HasSubstr(">accuracy</text>"));
  EXPECT_THAT(svg, Not(HasSubstr("positives")));
  ReliabilityPlotOptions options;
  options.positive_class = true;
  svg = ReliabilitySvg(OnePanelReport(), options);
  EXPECT_THAT(svg, HasSubstr(">predicted probability</text>"));
  EXPECT_THAT(svg, HasSubstr(">fraction of positives</text>"));
  EXPECT_THAT(svg, Not(HasSubstr(">confidence</text>")));
}

TEST(ReliabilitySvgTest, EscapesTheSourceName) {
  ReliabilityPlotOptions options;
  options.source = "a<b>&\"c'\x01\xff\xc3\xa9.npy";
  const std::string svg = ReliabilitySvg(OnePanelReport(), options);
  // Markup becomes entities; a control byte and a byte that is not UTF-8 become U+FFFD;
  // valid UTF-8 (é) stays.
  EXPECT_THAT(svg, HasSubstr(">a&lt;b&gt;&amp;&quot;c&apos;\xEF\xBF\xBD\xEF\xBF\xBD"
                             "\xc3\xa9.npy · 100 samples, 4 equal-width bins</text>"));
  EXPECT_THAT(svg, Not(HasSubstr("a<b>")));

  options.source = std::string(100, 'x');
  EXPECT_THAT(ReliabilitySvg(OnePanelReport(), options),
              HasSubstr(">" + std::string(60, 'x') + "… · 100 samples"));
}

}  // namespace
}  // namespace calib
