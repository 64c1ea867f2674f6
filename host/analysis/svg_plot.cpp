#include "analysis/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "analysis/html_report.h"
#include "core/error.h"

namespace vae {

namespace {

// matplotlib's tab10, the notebooks' default colours.
const char* const kColours[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
constexpr int kNumColours = 10;

constexpr double kPlot = 520;      // square plot area, px
constexpr double kMargin = 16;     // around the plot area
constexpr double kTop = 56;        // title lines
constexpr double kLegendW = 340;   // legend column right of the plot
constexpr double kRowH = 18;       // legend line height

// XML text: markup characters as entities (as in HTML); control characters, which XML 1.0
// forbids, dropped.
std::string escape(const std::string& s) {
  std::string kept;
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x20 || c == '\t' || c == '\n' || c == '\r') kept += c;
  return html_escape(kept);
}

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", v);
  return b;
}

}  // namespace

std::string scatter_svg(const ScatterPlot& p) {
  const size_t n = p.group.size();
  VAE_CHECK(p.xy.size() == 2 * n, "scatter_svg: xy must hold two coordinates per point");
  const int groups = static_cast<int>(p.legend.size());
  VAE_CHECK(p.detail.empty() || p.detail.size() == p.legend.size(), "scatter_svg: one detail line per group, or none");
  const double entry_h = kRowH * (p.detail.empty() ? 1 : 2);
  double x0 = 0, x1 = 0, y0 = 0, y1 = 0;
  for (size_t i = 0; i < n; ++i) {
    VAE_CHECK(p.group[i] >= 0 && p.group[i] < groups, "scatter_svg: group index out of range");
    const double x = p.xy[2 * i], y = p.xy[2 * i + 1];
    VAE_CHECK(std::isfinite(x) && std::isfinite(y), "scatter_svg: coordinates must be finite");
    if (i == 0 || x < x0) x0 = x;
    if (i == 0 || x > x1) x1 = x;
    if (i == 0 || y < y0) y0 = y;
    if (i == 0 || y > y1) y1 = y;
  }
  // One scale for both axes, centred: equal t-SNE distances look equal.
  const double span = std::max({x1 - x0, y1 - y0, 1e-12});
  const double scale = (kPlot - 2 * kMargin) / span;
  const double cx = 0.5 * (x0 + x1), cy = 0.5 * (y0 + y1);
  const double left = kMargin, top = kTop;
  const double width = left + kPlot + kLegendW;
  const double legend_h = kTop + kMargin + entry_h * groups;
  const double height = std::max(top + kPlot + kMargin, legend_h);

  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << num(width) << "\" height=\"" << num(height)
    << "\" viewBox=\"0 0 " << num(width) << " " << num(height) << "\" font-family=\"sans-serif\">\n";
  s << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s << "<text x=\"" << num(left) << "\" y=\"22\" font-size=\"16\">" << escape(p.title) << "</text>\n";
  s << "<text x=\"" << num(left) << "\" y=\"42\" font-size=\"12\" fill=\"#555\">" << escape(p.subtitle) << "</text>\n";
  s << "<rect x=\"" << num(left) << "\" y=\"" << num(top) << "\" width=\"" << num(kPlot) << "\" height=\"" << num(kPlot)
    << "\" fill=\"none\" stroke=\"#ccc\"/>\n";
  // Points grouped by colour (one <g> per group), in input order within a group.
  for (int g = 0; g < groups; ++g) {
    s << "<g fill=\"" << kColours[g % kNumColours] << "\" fill-opacity=\"0.75\" class=\"group" << g << "\">\n";
    for (size_t i = 0; i < n; ++i) {
      if (p.group[i] != g) continue;
      const double px = left + kPlot / 2 + (p.xy[2 * i] - cx) * scale;
      const double py = top + kPlot / 2 - (p.xy[2 * i + 1] - cy) * scale;  // y up, as in a plot
      s << "<circle cx=\"" << num(px) << "\" cy=\"" << num(py) << "\" r=\"2.6\"/>\n";
    }
    s << "</g>\n";
  }
  for (int g = 0; g < groups; ++g) {
    const double y = top + kMargin + entry_h * g;
    s << "<circle cx=\"" << num(left + kPlot + 20) << "\" cy=\"" << num(y - 4) << "\" r=\"5\" fill=\""
      << kColours[g % kNumColours] << "\"/>\n";
    s << "<text x=\"" << num(left + kPlot + 32) << "\" y=\"" << num(y) << "\" font-size=\"12\">" << escape(p.legend[g])
      << "</text>\n";
    if (!p.detail.empty() && !p.detail[g].empty())
      s << "<text x=\"" << num(left + kPlot + 32) << "\" y=\"" << num(y + kRowH - 3) << "\" font-size=\"11\" fill=\"#555\">"
        << escape(p.detail[g]) << "</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

namespace {

constexpr double kPanelW = 400, kPanelH = 260;       // plot area of one panel
constexpr double kPadL = 64, kPadR = 24, kPadT = 64, kPadB = 44;  // around each plot area

// Four significant digits, no exponent for the ranges metrics and losses live in.
std::string tick(double v) {
  char b[32];
  const double a = std::fabs(v);
  if (a != 0 && (a < 1e-3 || a >= 1e5)) std::snprintf(b, sizeof b, "%.2e", v);
  else std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

}  // namespace

std::string lines_svg(const LinePlot& p) {
  const size_t n = p.x.size();
  VAE_CHECK(n >= 1, "lines_svg: no x values");
  for (size_t i = 0; i < n; ++i) {
    VAE_CHECK(std::isfinite(p.x[i]), "lines_svg: x must be finite");
    VAE_CHECK(i == 0 || p.x[i] > p.x[i - 1], "lines_svg: x must increase");
  }
  VAE_CHECK(!p.panels.empty(), "lines_svg: no panels");
  for (const LinePanel& panel : p.panels) {
    VAE_CHECK(!panel.series.empty(), "lines_svg: a panel without series");
    for (const LineSeries& sr : panel.series)
      VAE_CHECK(sr.y.size() == n, "lines_svg: series '" + sr.name + "' has " + std::to_string(sr.y.size()) +
                                      " values for " + std::to_string(n) + " x values");
  }
  const double cell_w = kPadL + kPanelW + kPadR, cell_h = kPadT + kPanelH + kPadB;
  const double width = cell_w * static_cast<double>(p.panels.size()), height = 36 + cell_h;
  const double xa = p.x.front(), xb = n > 1 ? p.x.back() : p.x.front() + 1;

  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << num(width) << "\" height=\"" << num(height)
    << "\" viewBox=\"0 0 " << num(width) << " " << num(height) << "\" font-family=\"sans-serif\">\n";
  s << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s << "<text x=\"" << num(kMargin) << "\" y=\"24\" font-size=\"16\">" << escape(p.title) << "</text>\n";
  for (size_t pi = 0; pi < p.panels.size(); ++pi) {
    const LinePanel& panel = p.panels[pi];
    const double left = cell_w * static_cast<double>(pi) + kPadL, top = 36 + kPadT;
    double lo = 0, hi = 0;
    bool any = false;
    for (const LineSeries& sr : panel.series)
      for (double v : sr.y)
        if (std::isfinite(v)) {
          lo = any ? std::min(lo, v) : v;
          hi = any ? std::max(hi, v) : v;
          any = true;
        }
    if (!any) lo = 0, hi = 1;
    if (hi - lo < 1e-12 * std::max(1.0, std::fabs(hi))) lo -= 0.5, hi += 0.5;  // a flat line mid-panel
    const double pad = 0.05 * (hi - lo);
    lo -= pad, hi += pad;
    auto px = [&](double x) { return left + (x - xa) / (xb - xa) * kPanelW; };
    auto py = [&](double y) { return top + (hi - y) / (hi - lo) * kPanelH; };
    s << "<g class=\"panel" << pi << "\">\n";
    s << "<text x=\"" << num(left) << "\" y=\"" << num(top - 40) << "\" font-size=\"13\">" << escape(panel.title)
      << "</text>\n";
    s << "<rect x=\"" << num(left) << "\" y=\"" << num(top) << "\" width=\"" << num(kPanelW) << "\" height=\""
      << num(kPanelH) << "\" fill=\"none\" stroke=\"#999\"/>\n";
    // y ticks: bottom, middle, top of the data range; x ticks: first, middle, last x.
    for (double f : {0.0, 0.5, 1.0}) {
      const double v = lo + pad + f * (hi - lo - 2 * pad), y = py(v);
      s << "<line x1=\"" << num(left - 4) << "\" y1=\"" << num(y) << "\" x2=\"" << num(left) << "\" y2=\"" << num(y)
        << "\" stroke=\"#999\"/><text x=\"" << num(left - 6) << "\" y=\"" << num(y + 4)
        << "\" font-size=\"10\" text-anchor=\"end\">" << tick(v) << "</text>\n";
    }
    for (size_t i : {size_t{0}, (n - 1) / 2, n - 1}) {
      const double x = px(p.x[i]);
      s << "<line x1=\"" << num(x) << "\" y1=\"" << num(top + kPanelH) << "\" x2=\"" << num(x) << "\" y2=\""
        << num(top + kPanelH + 4) << "\" stroke=\"#999\"/><text x=\"" << num(x) << "\" y=\"" << num(top + kPanelH + 16)
        << "\" font-size=\"10\" text-anchor=\"middle\">" << tick(p.x[i]) << "</text>\n";
    }
    s << "<text x=\"" << num(left + kPanelW / 2) << "\" y=\"" << num(top + kPanelH + 34)
      << "\" font-size=\"11\" text-anchor=\"middle\">" << escape(p.x_label) << "</text>\n";
    if (!p.marker_label.empty() && p.marker_x >= xa && p.marker_x <= xb) {
      const double x = px(p.marker_x);
      const bool right_half = x > left + 0.6 * kPanelW;  // label on the side with room
      s << "<line class=\"marker\" x1=\"" << num(x) << "\" y1=\"" << num(top) << "\" x2=\"" << num(x) << "\" y2=\""
        << num(top + kPanelH) << "\" stroke=\"#555\" stroke-dasharray=\"4 3\"/><text x=\""
        << num(right_half ? x - 3 : x + 3) << "\" y=\"" << num(top + 12) << "\" font-size=\"10\" fill=\"#555\""
        << (right_half ? " text-anchor=\"end\"" : "") << ">" << escape(p.marker_label) << "</text>\n";
    }
    for (size_t si = 0; si < panel.series.size(); ++si) {
      const LineSeries& sr = panel.series[si];
      const char* colour = kColours[si % kNumColours];
      // One polyline per run of finite values (a NaN epoch leaves a gap); a run of one value,
      // which a line cannot show, is a dot.
      std::string pts;
      int run = 0;
      auto flush = [&] {
        if (run == 1) {
          const size_t comma = pts.find(',');
          s << "<circle class=\"series" << si << "\" cx=\"" << pts.substr(0, comma) << "\" cy=\""
            << pts.substr(comma + 1) << "\" r=\"2.5\" fill=\"" << colour << "\"/>\n";
        } else if (run > 1) {
          s << "<polyline class=\"series" << si << "\" fill=\"none\" stroke=\"" << colour
            << "\" stroke-width=\"1.8\" points=\"" << pts << "\"/>\n";
        }
        pts.clear();
        run = 0;
      };
      for (size_t i = 0; i < n; ++i) {
        if (!std::isfinite(sr.y[i])) {
          flush();
          continue;
        }
        pts += (pts.empty() ? "" : " ") + num(px(p.x[i])) + "," + num(py(sr.y[i]));
        ++run;
      }
      flush();
      // Legend: above the plot area, one entry per series.
      const double lx = left + static_cast<double>(si % 3) * (kPanelW / 3), ly = top - 22 + 14.0 * static_cast<double>(si / 3);
      s << "<line x1=\"" << num(lx) << "\" y1=\"" << num(ly - 4) << "\" x2=\"" << num(lx + 16) << "\" y2=\"" << num(ly - 4)
        << "\" stroke=\"" << colour << "\" stroke-width=\"2\"/><text x=\"" << num(lx + 20) << "\" y=\"" << num(ly)
        << "\" font-size=\"11\">" << escape(sr.name) << "</text>\n";
    }
    s << "</g>\n";
  }
  s << "</svg>\n";
  return s.str();
}

std::string bars_svg(const BarPlot& p) {
  const size_t g = p.groups.size();
  VAE_CHECK(g >= 1, "bars_svg: no groups");
  VAE_CHECK(!p.panels.empty(), "bars_svg: no panels");
  for (const BarPanel& panel : p.panels) {
    VAE_CHECK(panel.values.size() == g, "bars_svg: panel '" + panel.title + "' has " + std::to_string(panel.values.size()) +
                                            " values for " + std::to_string(g) + " groups");
    VAE_CHECK(panel.best.empty() || panel.best.size() == g, "bars_svg: one best flag per group, or none");
    for (double v : panel.values)
      VAE_CHECK(std::isnan(v) || (std::isfinite(v) && v >= 0), "bars_svg: values must be finite and >= 0 (or NaN)");
  }
  constexpr double kBarW = 26, kGap = 8, kH = 180, kPadX = 20, kTitleH = 30, kLabelH = 16, kPerRow = 4;
  const double panel_w = std::max(170.0, kPadX * 2 + static_cast<double>(g) * (kBarW + kGap));
  const double cell_h = kTitleH + kLabelH + kH + 14;
  const size_t cols = std::min<size_t>(p.panels.size(), static_cast<size_t>(kPerRow));
  const size_t rows = (p.panels.size() + cols - 1) / cols;
  const double top0 = 56, legend_h = 18.0 * static_cast<double>((g + 3) / 4) + 8;
  const double width = std::max(2 * kMargin + panel_w * static_cast<double>(cols), 420.0);
  const double height = top0 + cell_h * static_cast<double>(rows) + legend_h;

  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << num(width) << "\" height=\"" << num(height)
    << "\" viewBox=\"0 0 " << num(width) << " " << num(height) << "\" font-family=\"sans-serif\">\n";
  s << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s << "<text x=\"" << num(kMargin) << "\" y=\"22\" font-size=\"16\">" << escape(p.title) << "</text>\n";
  s << "<text x=\"" << num(kMargin) << "\" y=\"42\" font-size=\"12\" fill=\"#555\">" << escape(p.subtitle) << "</text>\n";
  for (size_t pi = 0; pi < p.panels.size(); ++pi) {
    const BarPanel& panel = p.panels[pi];
    const double left = kMargin + panel_w * static_cast<double>(pi % cols);
    const double top = top0 + cell_h * static_cast<double>(pi / cols);
    const double base = top + kTitleH + kLabelH + kH;  // the bars' foot
    double hi = 0;
    for (double v : panel.values)
      if (!std::isnan(v)) hi = std::max(hi, v);
    if (hi <= 0) hi = 1;  // all zero (or n/a): an empty axis, not a division by zero
    s << "<g class=\"panel" << pi << "\">\n";
    s << "<text x=\"" << num(left + kPadX) << "\" y=\"" << num(top + 18) << "\" font-size=\"13\">" << escape(panel.title)
      << "</text>\n";
    s << "<line x1=\"" << num(left + kPadX - 4) << "\" y1=\"" << num(base) << "\" x2=\""
      << num(left + panel_w - kPadX + 4) << "\" y2=\"" << num(base) << "\" stroke=\"#999\"/>\n";
    for (size_t i = 0; i < g; ++i) {
      const double x = left + kPadX + static_cast<double>(i) * (kBarW + kGap);
      const double v = panel.values[i];
      if (std::isnan(v)) {
        s << "<text x=\"" << num(x + kBarW / 2) << "\" y=\"" << num(base - 4) << "\" font-size=\"9\" fill=\"#777\" "
          << "text-anchor=\"middle\">n/a</text>\n";
        continue;
      }
      const double h = v / hi * kH;
      const bool best = !panel.best.empty() && panel.best[i];
      s << "<rect class=\"bar" << i << "\" x=\"" << num(x) << "\" y=\"" << num(base - h) << "\" width=\"" << num(kBarW)
        << "\" height=\"" << num(h) << "\" fill=\"" << kColours[i % kNumColours] << "\""
        << (best ? " stroke=\"black\" stroke-width=\"2\"" : "") << "><title>" << escape(p.groups[i]) << ": "
        << tick(v) << "</title></rect>\n";
      s << "<text x=\"" << num(x + kBarW / 2) << "\" y=\"" << num(base - h - 4) << "\" font-size=\"9\" "
        << "text-anchor=\"middle\"" << (best ? " font-weight=\"bold\"" : "") << ">" << tick(v) << "</text>\n";
    }
    s << "</g>\n";
  }
  const double ly = top0 + cell_h * static_cast<double>(rows) + 6;
  for (size_t i = 0; i < g; ++i) {
    const double x = kMargin + static_cast<double>(i % 4) * 120, y = ly + 18.0 * static_cast<double>(i / 4);
    s << "<rect x=\"" << num(x) << "\" y=\"" << num(y) << "\" width=\"12\" height=\"12\" fill=\""
      << kColours[i % kNumColours] << "\"/><text x=\"" << num(x + 16) << "\" y=\"" << num(y + 10)
      << "\" font-size=\"12\">" << escape(p.groups[i]) << "</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

}  // namespace vae
