#include "analysis/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

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

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
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

}  // namespace vae
