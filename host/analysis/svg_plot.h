// The t-SNE picture as a self-contained SVG (the notebooks' scatter of the users' latent space,
// coloured by K-Means cluster): no plotting library, opens in any browser.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vae {

struct ScatterPlot {
  std::string title;                  // first line above the plot
  std::string subtitle;               // second line (method, KL divergence, …)
  std::vector<float> xy;              // n × 2 coordinates
  std::vector<int32_t> group;         // n group indices in [0, legend.size())
  std::vector<std::string> legend;    // one label per group ("cluster 0 (93 users)")
  std::vector<std::string> detail;    // empty, or a second, smaller line per group ("Comedy 1.20x")
};

// Points keep their aspect ratio (t-SNE distances mean the same along x and y), scaled into a
// square plot; group g is drawn in colour g of the matplotlib tab10 cycle (repeating past 10).
// Throws VaeError when xy and group disagree in length, a group is out of range, detail is
// neither empty nor one per group, or a coordinate is not finite.
std::string scatter_svg(const ScatterPlot& p);

// Learning curves: panels side by side sharing the x axis (epochs), each with its own y range
// and its series as lines in the tab10 colours; non-finite values leave gaps.
struct LineSeries {
  std::string name;
  std::vector<double> y;  // one value per x
};
struct LinePanel {
  std::string title;
  std::vector<LineSeries> series;
};
struct LinePlot {
  std::string title;
  std::vector<double> x;          // increasing
  std::vector<LinePanel> panels;
  double marker_x = 0;            // a dashed vertical line (the best epoch) when marker_label is set
  std::string marker_label;
  std::string x_label = "epoch";  // under the x axis
};

// Throws VaeError when x is empty or not increasing, a series' length differs from x's, or a
// panel has no series.
std::string lines_svg(const LinePlot& p);

// Grouped values side by side (compare's metrics): one panel per metric, one bar per group in
// the tab10 colours, its value printed above it; each panel's y axis runs from 0 to its largest
// value. NaN leaves a group's bar out ("n/a"). Panels wrap four to a row.
struct BarPanel {
  std::string title;
  std::vector<double> values;  // one per group, finite and >= 0, or NaN
  std::vector<bool> best;      // empty, or one per group: the bar drawn with a black outline
};
struct BarPlot {
  std::string title;
  std::string subtitle;
  std::vector<std::string> groups;  // the legend, in bar order
  std::vector<BarPanel> panels;
};

// Throws VaeError when there are no groups or no panels, a panel's values (or best flags) are not
// one per group, or a value is negative or infinite.
std::string bars_svg(const BarPlot& p);

}  // namespace vae
