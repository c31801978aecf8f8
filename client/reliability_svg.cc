#include "client/reliability_svg.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace calib {
namespace {

// Layout, in viewBox units. A panel is the square axes with the count histogram below
// it and the metrics box below that; panels sit side by side, the key under them all.
constexpr double kMargin = 10;
constexpr double kPanelWidth = 400;
constexpr double kPanelsTop = 62;
constexpr double kAxesLeft = 70;  // within a panel: room for tick labels and the y label
constexpr double kAxesTop = 28;
constexpr double kAxesSize = 300;
constexpr double kHistTop = kAxesTop + kAxesSize + 10;
constexpr double kHistHeight = 62;
constexpr double kHistLabelRoom = 12;  // above the tallest count bar, for its label
constexpr double kBoxTop = kHistTop + kHistHeight + 46;
constexpr double kBoxHeight = 44;
constexpr double kPanelHeight = kBoxTop + kBoxHeight + 8;
constexpr double kKeyRowHeight = 22;
constexpr double kKeyFontSize = 12;
constexpr double kCountFontSize = 9;
// The average advance of text in DejaVu Sans, the widest common sans-serif, per unit
// of font size.
constexpr double kTextWidth = 0.56;
constexpr size_t kMaxSourceBytes = 60;

constexpr char kBarFill[] = "#6a8fc8";
constexpr char kBarStroke[] = "#2f4f86";
constexpr char kGapColor[] = "#c8382c";
constexpr char kCountFill[] = "#a3a3a3";

struct Panel {
  std::string heading;
  const v1::Metrics* metrics;
};

struct Labels {
  std::string x_axis;
  std::string y_axis;
  std::string bar;
  std::string gap;
  std::string interval;
};

void AppendReplacement(std::string* out) { out->append("\xEF\xBF\xBD"); }

// Length of the valid UTF-8 sequence at text[i], or 0 when it is not one.
size_t Utf8Length(absl::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  size_t length = 0;
  unsigned char low = 0x80, high = 0xBF;  // the allowed range of the second byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // overlong
    if (lead == 0xED) high = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;
    if (lead == 0xF4) high = 0x8F;
  } else {
    return 0;
  }
  if (i + length > text.size() || byte(i + 1) < low || byte(i + 1) > high) return 0;
  for (size_t k = i + 2; k < i + length; ++k) {
    if (byte(k) < 0x80 || byte(k) > 0xBF) return 0;
  }
  return length;
}

// Character data and attribute values: markup characters become entities, and bytes
// that XML 1.0 cannot hold (controls, invalid UTF-8 from a file name) become U+FFFD, so
// that any input yields a well-formed document.
std::string Escape(absl::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      const size_t length = Utf8Length(text, i);
      if (length == 0) {
        AppendReplacement(&out);
        ++i;
      } else {
        out.append(text.data() + i, length);
        i += length;
      }
      continue;
    }
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        if (c < 0x20 && c != '\t') {
          AppendReplacement(&out);
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  return out;
}

// A long file name is cut (on a UTF-8 boundary) rather than run off the figure.
std::string Shorten(const std::string& text) {
  if (text.size() <= kMaxSourceBytes) return text;
  size_t end = kMaxSourceBytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end) + "\xE2\x80\xA6";
}

// "1.02e+08" -> "1.02×10⁸": numbers far from 1 (a temperature of 1e8, an NLL of 3e6)
// stay short and read as a person writes them.
std::string Scientific(double value) {
  const std::string text = absl::StrFormat("%.3g", value);
  const size_t e = text.find('e');
  if (e == std::string::npos) return text;
  static const char* const kSuperscripts[] = {"⁰", "¹", "²", "³", "⁴",
                                              "⁵", "⁶", "⁷", "⁸", "⁹"};
  const int exponent = std::atoi(text.c_str() + e + 1);
  std::string out = absl::StrCat(text.substr(0, e), "×10", exponent < 0 ? "⁻" : "");
  for (char digit : std::to_string(std::abs(exponent))) {
    out += kSuperscripts[digit - '0'];
  }
  return out;
}

std::string Metric(double value) {
  const double magnitude = std::abs(value);
  if (value == 0 || (magnitude >= 1e-3 && magnitude < 1e4)) {
    return absl::StrFormat("%.4f", value);
  }
  return Scientific(value);
}

// Two or three significant digits, so that a count label fits a narrow bin: 2.4k, 24k,
// 243k, 1.2M.
std::string Count(uint64_t count) {
  if (count < 1000) return absl::StrCat(count);
  const char* const kSuffixes[] = {"k", "M", "G", "T", "P", "E"};
  double value = static_cast<double>(count);
  int suffix = -1;
  while (value >= 999.5) {
    value /= 1000;
    ++suffix;
  }
  return absl::StrFormat(value < 9.95 ? "%.1f%s" : "%.0f%s", value, kSuffixes[suffix]);
}

// Advances of DejaVu Sans, the widest common sans-serif, per unit of font size.
double CountWidth(const std::string& text, double font_size) {
  double width = 0;
  for (char c : text) {
    width += c == '.' ? 0.32 : (c >= '0' && c <= '9') ? 0.64 : c == 'k' ? 0.6 : 0.87;
  }
  return width * font_size;
}

std::string Tick(int i) {
  return i == 0 ? "0" : i == 5 ? "1" : absl::StrCat("0.", 2 * i);
}

// Maps [0, 1] data to the axes of one panel.
class Axes {
 public:
  Axes(double left, double top) : left_(left), top_(top) {}
  double X(double v) const { return left_ + kAxesSize * std::clamp(v, 0.0, 1.0); }
  double Y(double v) const { return top_ + kAxesSize * (1 - std::clamp(v, 0.0, 1.0)); }
  double left() const { return left_; }
  double top() const { return top_; }
  double right() const { return left_ + kAxesSize; }
  double bottom() const { return top_ + kAxesSize; }

 private:
  double left_, top_;
};

void AppendText(std::string* out, double x, double y, absl::string_view anchor,
                double size, absl::string_view text, absl::string_view extra = "") {
  absl::StrAppendFormat(out,
                        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" "
                        "font-size=\"%g\"%s>%s</text>\n",
                        x, y, anchor, size, extra, Escape(text));
}

void AppendVerticalText(std::string* out, double x, double y, double size,
                        absl::string_view text) {
  absl::StrAppendFormat(out,
                        "<text transform=\"translate(%.1f %.1f) rotate(-90)\" "
                        "text-anchor=\"middle\" font-size=\"%g\">%s</text>\n",
                        x, y, size, Escape(text));
}

void AppendReliability(const v1::Metrics& metrics, const Axes& a, std::string* out) {
  // Grid first, so that everything drawn later sits on top of it.
  out->append("<g stroke=\"#e4e4e4\" stroke-width=\"1\">\n");
  for (int i = 1; i < 5; ++i) {
    absl::StrAppendFormat(out, "<path d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1f\"/>\n",
                          a.X(0.2 * i), a.top(), a.bottom(), a.left(), a.Y(0.2 * i),
                          a.right());
  }
  out->append("</g>\n");

  std::vector<const v1::ReliabilityBin*> bins;
  double narrowest = kAxesSize;
  for (const v1::ReliabilityBin& bin : metrics.reliability_bins()) {
    if (bin.count() == 0) continue;
    bins.push_back(&bin);
    narrowest = std::min(narrowest, a.X(bin.upper()) - a.X(bin.lower()));
  }
  // Outlines and caps only where a bin is wide enough to show them, and error bars that
  // thin with the bins rather than hide them.
  const bool outlined = narrowest >= 6;
  const double cap = std::min(8.0, 0.35 * narrowest);
  const double whisker = std::clamp(0.2 * narrowest, 0.4, 1.2);

  absl::StrAppendFormat(out, "<g fill=\"%s\" stroke=\"%s\" stroke-width=\"%s\">\n",
                        kBarFill, outlined ? kBarStroke : "none", "0.7");
  for (const v1::ReliabilityBin* bin : bins) {
    absl::StrAppendFormat(
        out,
        "<rect class=\"bar\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"/>\n",
        a.X(bin->lower()), a.Y(bin->accuracy()), a.X(bin->upper()) - a.X(bin->lower()),
        a.bottom() - a.Y(bin->accuracy()));
  }
  out->append("</g>\n");

  absl::StrAppendFormat(out, "<g fill=\"url(#gap)\" stroke=\"%s\" stroke-width=\"%s\">\n",
                        kGapColor, outlined ? "0.9" : "0");
  for (const v1::ReliabilityBin* bin : bins) {
    const double y1 = a.Y(bin->accuracy()), y2 = a.Y(bin->mean_confidence());
    absl::StrAppendFormat(
        out,
        "<rect class=\"gap\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"/>\n",
        a.X(bin->lower()), std::min(y1, y2), a.X(bin->upper()) - a.X(bin->lower()),
        std::abs(y1 - y2));
  }
  out->append("</g>\n");

  absl::StrAppendFormat(out,
                        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                        "stroke=\"#3a3a3a\" stroke-width=\"1.2\" "
                        "stroke-dasharray=\"6 4\"/>\n",
                        a.X(0), a.Y(0), a.X(1), a.Y(1));

  absl::StrAppendFormat(out, "<g stroke=\"%s\" stroke-width=\"%.2g\" fill=\"none\">\n",
                        outlined ? "#1a1a1a" : "#5a5a5a", whisker);
  for (const v1::ReliabilityBin* bin : bins) {
    const double x = 0.5 * (a.X(bin->lower()) + a.X(bin->upper()));
    const double lo = a.Y(bin->accuracy_lower()), hi = a.Y(bin->accuracy_upper());
    absl::StrAppendFormat(out, "<path class=\"interval\" d=\"M%.2f %.2fV%.2f", x, lo, hi);
    if (cap >= 2) {
      absl::StrAppendFormat(out, "M%.2f %.2fH%.2fM%.2f %.2fH%.2f", x - cap / 2, lo,
                            x + cap / 2, x - cap / 2, hi, x + cap / 2);
    }
    out->append("\"/>\n");
  }
  out->append("</g>\n");

  absl::StrAppendFormat(out,
                        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%g\" height=\"%g\" "
                        "fill=\"none\" stroke=\"#000\" stroke-width=\"1\"/>\n",
                        a.left(), a.top(), kAxesSize, kAxesSize);
  out->append("<g stroke=\"#000\" stroke-width=\"1\">\n");
  for (int i = 0; i <= 5; ++i) {
    absl::StrAppendFormat(out, "<path d=\"M%.1f %.1fh-4M%.1f %.1fv4\"/>\n", a.left(),
                          a.Y(0.2 * i), a.X(0.2 * i), a.bottom());
  }
  out->append("</g>\n");
  for (int i = 0; i <= 5; ++i) {
    AppendText(out, a.left() - 7, a.Y(0.2 * i) + 4, "end", 11, Tick(i));
  }
}

// Square-root heights keep a bin of a handful of samples visible beside one that holds
// most of them; the printed counts give the exact values.
void AppendHistogram(const v1::Metrics& metrics, double left, double top,
                     std::string* out) {
  const double bottom = top + kHistHeight;
  const auto x = [&](double v) { return left + kAxesSize * std::clamp(v, 0.0, 1.0); };
  uint64_t most = 0;
  bool labelled = true;
  for (const v1::ReliabilityBin& bin : metrics.reliability_bins()) {
    if (bin.count() == 0) continue;
    most = std::max(most, bin.count());
    const double width = x(bin.upper()) - x(bin.lower());
    labelled &= CountWidth(Count(bin.count()), kCountFontSize) <= width + 2;
  }
  const double room = kHistHeight - (labelled ? kHistLabelRoom : 2);

  absl::StrAppendFormat(out, "<g fill=\"%s\">\n", kCountFill);
  for (const v1::ReliabilityBin& bin : metrics.reliability_bins()) {
    if (bin.count() == 0) continue;
    const double height =
        room * std::sqrt(static_cast<double>(bin.count()) / static_cast<double>(most));
    absl::StrAppendFormat(
        out,
        "<rect class=\"count\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"/>\n",
        x(bin.lower()), bottom - height, x(bin.upper()) - x(bin.lower()), height);
  }
  out->append("</g>\n");
  if (labelled) {
    absl::StrAppendFormat(out,
                          "<g font-size=\"%g\" fill=\"#333\" text-anchor=\"middle\">\n",
                          kCountFontSize);
    for (const v1::ReliabilityBin& bin : metrics.reliability_bins()) {
      if (bin.count() == 0) continue;
      const double height =
          room * std::sqrt(static_cast<double>(bin.count()) / static_cast<double>(most));
      absl::StrAppendFormat(out, "<text x=\"%.2f\" y=\"%.2f\">%s</text>\n",
                            0.5 * (x(bin.lower()) + x(bin.upper())), bottom - height - 3,
                            Count(bin.count()));
    }
    out->append("</g>\n");
  }

  absl::StrAppendFormat(out,
                        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%g\" height=\"%g\" "
                        "fill=\"none\" stroke=\"#000\" stroke-width=\"1\"/>\n",
                        left, top, kAxesSize, kHistHeight);
  out->append("<g stroke=\"#000\" stroke-width=\"1\">\n");
  for (int i = 0; i <= 5; ++i) {
    absl::StrAppendFormat(out, "<path d=\"M%.1f %.1fv4\"/>\n", x(0.2 * i), bottom);
  }
  // Without the counts printed on the bars, the axis gives the scale.
  const bool ticked = most > 0 && !labelled;
  if (ticked) {
    absl::StrAppendFormat(out, "<path d=\"M%.1f %.1fh-4M%.1f %.1fh-4\"/>\n", left,
                          bottom - room, left, bottom);
  }
  out->append("</g>\n");
  for (int i = 0; i <= 5; ++i) {
    AppendText(out, x(0.2 * i), bottom + 16, "middle", 11, Tick(i));
  }
  if (ticked) {
    AppendText(out, left - 7, bottom - room + 4, "end", 10, Count(most));
    AppendText(out, left - 7, bottom + 3, "end", 10, "0");
  }
}

// Each entry is "label value" in one text element, so a long value pushes nothing out
// of its third of the box.
void AppendMetricsBox(const v1::Metrics& metrics, double left, double top,
                      std::string* out) {
  std::vector<std::pair<std::string, std::string>> entries = {
      {"ECE", Metric(metrics.ece())},
      {"MCE", Metric(metrics.mce())},
      {"NLL", Metric(metrics.nll())},
      {"accuracy", Metric(metrics.accuracy())}};
  if (metrics.has_smooth_ece()) {
    entries.emplace_back("smECE", Metric(metrics.smooth_ece()));
  }
  absl::StrAppendFormat(out,
                        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%g\" height=\"%g\" rx=\"3\" "
                        "fill=\"#f6f6f6\" stroke=\"#b5b5b5\" stroke-width=\"0.8\"/>\n",
                        left, top, kAxesSize, kBoxHeight);
  for (size_t i = 0; i < entries.size(); ++i) {
    absl::StrAppendFormat(
        out,
        "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\"><tspan fill=\"#555\">%s</tspan> "
        "%s</text>\n",
        left + 10 + kAxesSize / 3 * static_cast<double>(i % 3),
        top + 18 + 17 * static_cast<double>(i / 3), entries[i].first, entries[i].second);
  }
}

void AppendPanel(const Panel& panel, const Labels& labels, double left, double top,
                 std::string* out) {
  out->append("<g class=\"panel\">\n");
  const Axes axes(left + kAxesLeft, top + kAxesTop);
  if (!panel.heading.empty()) {
    AppendText(out, axes.left() + kAxesSize / 2, top + 16, "middle", 14, panel.heading,
               " font-weight=\"bold\"");
  }
  AppendReliability(*panel.metrics, axes, out);
  AppendVerticalText(out, axes.left() - 44, axes.top() + kAxesSize / 2, 13,
                     labels.y_axis);
  AppendHistogram(*panel.metrics, axes.left(), top + kHistTop, out);
  AppendVerticalText(out, axes.left() - 44, top + kHistTop + kHistHeight / 2, 11,
                     "count");
  AppendText(out, axes.left() + kAxesSize / 2, top + kHistTop + kHistHeight + 34,
             "middle", 13, labels.x_axis);
  AppendMetricsBox(*panel.metrics, axes.left(), top + kBoxTop, out);
  out->append("</g>\n");
}

// A key entry: its mark, 18 units wide from x and centred on y, then its text.
struct KeyEntry {
  std::string text;
  std::string (*mark)(double x, double y);
};

std::string BarMark(double x, double y) {
  return absl::StrFormat(
      "<rect x=\"%.1f\" y=\"%.1f\" width=\"18\" height=\"12\" fill=\"%s\" stroke=\"%s\" "
      "stroke-width=\"0.7\"/>\n",
      x, y - 6, kBarFill, kBarStroke);
}

std::string GapMark(double x, double y) {
  return absl::StrFormat(
      "<rect x=\"%.1f\" y=\"%.1f\" width=\"18\" height=\"12\" fill=\"url(#gap)\" "
      "stroke=\"%s\" stroke-width=\"0.9\"/>\n",
      x, y - 6, kGapColor);
}

std::string IntervalMark(double x, double y) {
  return absl::StrFormat(
      "<path d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f\" stroke=\"#1a1a1a\" "
      "stroke-width=\"1.2\" fill=\"none\"/>\n",
      x + 9, y - 7, y + 7, x + 5, y - 7, x + 13, x + 5, y + 7, x + 13);
}

std::string DiagonalMark(double x, double y) {
  return absl::StrFormat(
      "<path d=\"M%.1f %.1fH%.1f\" stroke=\"#3a3a3a\" stroke-width=\"1.2\" "
      "stroke-dasharray=\"6 4\"/>\n",
      x, y, x + 18);
}

std::string CountMark(double x, double y) {
  return absl::StrFormat(
      "<rect x=\"%.1f\" y=\"%.1f\" width=\"18\" height=\"12\" fill=\"%s\"/>\n", x, y - 6,
      kCountFill);
}

double TextWidth(const std::string& text, double font_size) {
  const auto points = std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  });
  return static_cast<double>(points) * kTextWidth * font_size;
}

// The key explains the marks once for all panels, in centred rows that fit `width`.
// Returns the height it took.
double AppendKey(const Labels& labels, double width, double top, std::string* out) {
  const std::vector<KeyEntry> entries = {{labels.bar, BarMark},
                                         {labels.gap, GapMark},
                                         {labels.interval, IntervalMark},
                                         {"perfect calibration", DiagonalMark},
                                         {"bin count (√ scale)", CountMark}};
  constexpr double kMarkWidth = 18 + 7, kSpacing = 22;
  const auto entry_width = [](const KeyEntry& e) {
    return kMarkWidth + TextWidth(e.text, kKeyFontSize);
  };
  const double room = width - 2 * kMargin;
  // Rows of at most `per_row` entries, each filled while it fits.
  const auto split = [&](size_t per_row) {
    std::vector<std::vector<const KeyEntry*>> rows;
    double used = 0;
    for (const KeyEntry& e : entries) {
      if (rows.empty() || rows.back().size() == per_row ||
          used + kSpacing + entry_width(e) > room) {
        rows.emplace_back();
        used = -kSpacing;
      }
      rows.back().push_back(&e);
      used += kSpacing + entry_width(e);
    }
    return rows;
  };
  // As few rows as fit, then the entries spread evenly over that many rows if they fit
  // so: four and one read worse than three and two.
  std::vector<std::vector<const KeyEntry*>> rows = split(entries.size());
  const auto even = split((entries.size() + rows.size() - 1) / rows.size());
  if (even.size() == rows.size()) rows = even;
  out->append("<g class=\"key\">\n");
  for (size_t r = 0; r < rows.size(); ++r) {
    double total = -kSpacing;
    for (const KeyEntry* e : rows[r]) {
      total += kSpacing + entry_width(*e);
    }
    double x = (width - total) / 2;
    const double y = top + kKeyRowHeight * (static_cast<double>(r) + 0.5);
    for (const KeyEntry* e : rows[r]) {
      out->append(e->mark(x, y));
      AppendText(out, x + kMarkWidth, y + 4, "start", kKeyFontSize, e->text);
      x += entry_width(*e) + kSpacing;
    }
  }
  out->append("</g>\n");
  return kKeyRowHeight * static_cast<double>(rows.size());
}

}  // namespace

std::string ReliabilitySvg(const v1::Report& report,
                           const ReliabilityPlotOptions& options) {
  std::vector<Panel> panels = {{"", &report.metrics()}};
  if (report.has_temperature_scaling()) {
    const v1::TemperatureScaling& t = report.temperature_scaling();
    panels.push_back({absl::StrCat("after temperature scaling (T = ",
                                   Scientific(t.temperature()), ")"),
                      &t.calibrated()});
  }
  if (report.has_platt_scaling()) {
    const v1::PlattScaling& p = report.platt_scaling();
    panels.push_back({absl::StrCat("after Platt scaling (a = ", Scientific(p.slope()),
                                   ", b = ", Scientific(p.intercept()), ")"),
                      &p.calibrated()});
  }
  if (panels.size() > 1) panels.front().heading = "before scaling";

  Labels labels;
  labels.x_axis = options.positive_class ? "predicted probability" : "confidence";
  labels.y_axis = options.positive_class ? "fraction of positives" : "accuracy";
  labels.bar = labels.y_axis;
  labels.gap =
      options.positive_class ? "gap to mean probability" : "gap to mean confidence";
  labels.interval =
      absl::StrFormat("%g%% Clopper-Pearson interval", 100 * options.confidence_level);

  const double width = 2 * kMargin + kPanelWidth * static_cast<double>(panels.size());
  std::string body;
  const v1::Metrics& raw = report.metrics();
  AppendText(&body, width / 2, 26, "middle", 17, "Reliability diagram",
             " font-weight=\"bold\"");
  std::string subtitle =
      absl::StrCat(raw.num_samples(), raw.num_samples() == 1 ? " sample, " : " samples, ",
                   raw.reliability_bins_size(), " equal-width bins");
  if (!options.source.empty()) subtitle = Shorten(options.source) + " · " + subtitle;
  AppendText(&body, width / 2, 46, "middle", 12, subtitle, " fill=\"#555\"");
  for (size_t i = 0; i < panels.size(); ++i) {
    AppendPanel(panels[i], labels, kMargin + kPanelWidth * static_cast<double>(i),
                kPanelsTop, &body);
  }
  const double key_top = kPanelsTop + kPanelHeight;
  const double height = key_top + AppendKey(labels, width, key_top, &body) + kMargin;

  std::string out = absl::StrFormat(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" "
      "viewBox=\"0 0 %g %g\" width=\"%g\" height=\"%g\" font-family=\"sans-serif\">\n"
      "<title>Reliability diagram</title>\n"
      "<defs>\n"
      "<pattern id=\"gap\" width=\"5\" height=\"5\" patternUnits=\"userSpaceOnUse\" "
      "patternTransform=\"rotate(45)\">\n"
      "<rect width=\"5\" height=\"5\" fill=\"%s\" fill-opacity=\"0.22\"/>\n"
      "<path d=\"M0 0V5\" stroke=\"%s\" stroke-width=\"1.3\"/>\n"
      "</pattern>\n"
      "</defs>\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n",
      width, height, width, height, kGapColor, kGapColor);
  out.append(body);
  out.append("</svg>\n");
  return out;
}

}  // namespace calib
