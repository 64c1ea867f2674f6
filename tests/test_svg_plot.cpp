// The t-SNE picture: every point drawn once in its group's colour, inside the plot, with the
// aspect ratio kept; text escaped; bad input refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/svg_plot.h"
#include "core/error.h"

namespace {

using vae::ScatterPlot;
using vae::scatter_svg;

struct Circle {
  double x, y;
  int group;
};

// The point circles (r 2.6) with the group of the <g class="groupN"> they sit in.
std::vector<Circle> point_circles(const std::string& svg) {
  std::vector<Circle> out;
  const std::regex group_re("<g [^>]*class=\"group([0-9]+)\">"), circle_re("<circle cx=\"([-0-9.]+)\" cy=\"([-0-9.]+)\" r=\"2.6\"/>");
  int group = -1;
  size_t pos = 0;
  std::string line;
  while (pos < svg.size()) {
    const size_t end = svg.find('\n', pos);
    line = svg.substr(pos, end - pos);
    pos = end == std::string::npos ? svg.size() : end + 1;
    std::smatch m;
    if (std::regex_search(line, m, group_re)) group = std::stoi(m[1]);
    else if (line == "</g>") group = -1;
    else if (std::regex_search(line, m, circle_re)) out.push_back({std::stod(m[1]), std::stod(m[2]), group});
  }
  return out;
}

// The plot areas (x, y, width, height) an SVG declares: its unfilled rectangles, in order.
std::vector<std::array<double, 4>> frames(const std::string& svg) {
  std::vector<std::array<double, 4>> out;
  const std::regex fr("<rect x=\"([0-9.]+)\" y=\"([0-9.]+)\" width=\"([0-9.]+)\" height=\"([0-9.]+)\" fill=\"none\"");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), fr); it != std::sregex_iterator(); ++it)
    out.push_back({std::stod((*it)[1]), std::stod((*it)[2]), std::stod((*it)[3]), std::stod((*it)[4])});
  return out;
}

ScatterPlot three_groups() {
  ScatterPlot p;
  p.title = "t-SNE of <users> & friends";
  p.subtitle = "k = 3";
  p.legend = {"cluster 0", "cluster 1", "cluster 2"};
  p.detail = {"Comedy 1.20x", "", "Drama \"2x\""};
  // Group g at x = 10·g, spread in y from 0 to 5: the x span (20) is four times the y span.
  for (int g = 0; g < 3; ++g)
    for (int i = 0; i < 4 + g; ++i) {
      p.xy.push_back(10.0f * g);
      p.xy.push_back(5.0f * static_cast<float>(i) / static_cast<float>(3 + g));
      p.group.push_back(g);
    }
  return p;
}

TEST(ScatterSvg, EveryPointOnceInItsGroupInsideThePlotWithTheAspectKept) {
  const ScatterPlot p = three_groups();
  const std::string svg = scatter_svg(p);
  const std::vector<Circle> c = point_circles(svg);
  ASSERT_EQ(c.size(), p.group.size());
  int per_group[3] = {0, 0, 0};
  double x0 = 1e9, x1 = -1e9, y0 = 1e9, y1 = -1e9;
  for (const Circle& k : c) {
    ASSERT_GE(k.group, 0);
    ++per_group[k.group];
    x0 = std::min(x0, k.x), x1 = std::max(x1, k.x), y0 = std::min(y0, k.y), y1 = std::max(y1, k.y);
  }
  EXPECT_EQ(per_group[0], 4);
  EXPECT_EQ(per_group[1], 5);
  EXPECT_EQ(per_group[2], 6);
  // Inside the plot rectangle, which the SVG declares.
  const std::vector<std::array<double, 4>> f = frames(svg);
  ASSERT_EQ(f.size(), 1u);
  const double rx = f[0][0], ry = f[0][1], rw = f[0][2], rh = f[0][3];
  EXPECT_GE(x0, rx);
  EXPECT_LE(x1, rx + rw);
  EXPECT_GE(y0, ry);
  EXPECT_LE(y1, ry + rh);
  // One scale on both axes: the picture's x spread is four times its y spread.
  EXPECT_NEAR((x1 - x0) / (y1 - y0), 4.0, 0.05);
  // Group 0 (smallest x) on the left; y grows upwards, so the largest y is drawn highest.
  double prev_y = 1e9;
  for (const Circle& k : c) {
    if (k.group != 0) continue;
    EXPECT_NEAR(k.x, x0, 0.05);
    EXPECT_LT(k.y, prev_y);  // group 0's points come in increasing data y: each drawn higher
    prev_y = k.y;
  }
  // Colours: tab10's first three, one group each; text escaped.
  EXPECT_THAT(svg, ::testing::HasSubstr("<g fill=\"#1f77b4\""));
  EXPECT_THAT(svg, ::testing::HasSubstr("<g fill=\"#2ca02c\""));
  EXPECT_THAT(svg, ::testing::HasSubstr("t-SNE of &lt;users&gt; &amp; friends"));
  EXPECT_THAT(svg, ::testing::HasSubstr("Drama &quot;2x&quot;"));
  EXPECT_THAT(svg, ::testing::Not(::testing::HasSubstr("nan")));
  EXPECT_EQ(svg, scatter_svg(p));  // deterministic
}

TEST(ScatterSvg, RefusesBadInput) {
  ScatterPlot p = three_groups();
  p.group[2] = 3;
  EXPECT_THROW(scatter_svg(p), vae::VaeError);
  p = three_groups();
  p.xy.pop_back();
  EXPECT_THROW(scatter_svg(p), vae::VaeError);
  p = three_groups();
  p.xy[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(scatter_svg(p), vae::VaeError);
  p = three_groups();
  p.detail.pop_back();
  EXPECT_THROW(scatter_svg(p), vae::VaeError);
  // A single point (zero span) lands in the middle of the plot; control characters are dropped.
  ScatterPlot one;
  one.legend = {"only\x01"};
  one.xy = {3.0f, -2.0f};
  one.group = {0};
  const std::string svg = scatter_svg(one);
  EXPECT_THAT(svg, ::testing::Not(::testing::HasSubstr("\x01")));
  const std::vector<Circle> c = point_circles(svg);
  ASSERT_EQ(c.size(), 1u);
  const std::vector<std::array<double, 4>> f = frames(svg);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_NEAR(c[0].x, f[0][0] + f[0][2] / 2, 0.06);
  EXPECT_NEAR(c[0].y, f[0][1] + f[0][3] / 2, 0.06);
}

// The polylines of a lines_svg picture: series index and points, in document order.
struct Polyline {
  int series;
  std::vector<std::pair<double, double>> pts;
};
std::vector<Polyline> polylines(const std::string& svg) {
  std::vector<Polyline> out;
  const std::regex re("<polyline class=\"series([0-9]+)\"[^>]* points=\"([^\"]*)\"/>");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it) {
    Polyline pl{std::stoi((*it)[1]), {}};
    std::istringstream ps((*it)[2]);
    std::string xy;
    while (ps >> xy) {
      const size_t comma = xy.find(',');
      pl.pts.push_back({std::stod(xy.substr(0, comma)), std::stod(xy.substr(comma + 1))});
    }
    out.push_back(pl);
  }
  return out;
}

vae::LinePlot two_panels() {
  vae::LinePlot p;
  p.title = "vae on <data>";
  p.x = {1, 2, 3, 4, 5};
  p.panels.push_back({"loss", {{"train", {5, 4, 3, 2.5, 2}}, {"test", {6, 5, 4.5, 4.4, 4.6}}}});
  p.panels.push_back({"metrics", {{"NDCG@20", {0.1, 0.2, NAN, 0.3, 0.35}}}});
  p.marker_x = 4;
  p.marker_label = "best epoch 4";
  return p;
}

TEST(LinesSvg, OneLinePerSeriesWithGapsAtNaNAndValuesUpwards) {
  const vae::LinePlot p = two_panels();
  const std::string svg = vae::lines_svg(p);
  const std::vector<Polyline> pl = polylines(svg);
  // train and test in panel 0 (5 points each); NDCG@20 split by its NaN into 2 + 2 points.
  ASSERT_EQ(pl.size(), 4u);
  EXPECT_EQ(pl[0].series, 0);
  EXPECT_EQ(pl[0].pts.size(), 5u);
  EXPECT_EQ(pl[1].series, 1);
  EXPECT_EQ(pl[1].pts.size(), 5u);
  EXPECT_EQ(pl[2].pts.size(), 2u);
  EXPECT_EQ(pl[3].pts.size(), 2u);
  // x grows to the right; a larger value is drawn higher (smaller y), train below test.
  for (size_t i = 1; i < 5; ++i) {
    EXPECT_GT(pl[0].pts[i].first, pl[0].pts[i - 1].first);
    EXPECT_GT(pl[0].pts[i].second, pl[0].pts[i - 1].second);  // train falls
  }
  for (size_t i = 0; i < 5; ++i) EXPECT_GT(pl[0].pts[i].second, pl[1].pts[i].second);
  // The metric panel lies right of the loss panel, and the gap sits at epoch 3.
  EXPECT_GT(pl[2].pts[0].first, pl[0].pts[4].first);
  EXPECT_LT(pl[2].pts[1].first, pl[3].pts[0].first);
  // Every point inside its panel's frame.
  const std::vector<std::array<double, 4>> panels = frames(svg);
  ASSERT_EQ(panels.size(), 2u);
  for (const Polyline& l : pl) {
    const auto& f = panels[&l - &pl[0] < 2 ? 0 : 1];
    for (auto [x, y] : l.pts) {
      EXPECT_GE(x, f[0] - 0.05);
      EXPECT_LE(x, f[0] + f[2] + 0.05);
      EXPECT_GE(y, f[1] - 0.05);
      EXPECT_LE(y, f[1] + f[3] + 0.05);
    }
  }
  EXPECT_THAT(svg, ::testing::HasSubstr("best epoch 4"));
  EXPECT_THAT(svg, ::testing::HasSubstr("vae on &lt;data&gt;"));
  EXPECT_THAT(svg, ::testing::Not(::testing::HasSubstr("nan")));
  // The best-epoch marker stands at epoch 4's x.
  std::smatch mk;
  ASSERT_TRUE(std::regex_search(svg, mk, std::regex("<line class=\"marker\" x1=\"([0-9.]+)\"")));
  EXPECT_NEAR(std::stod(mk[1]), pl[0].pts[3].first, 0.06);
  vae::LinePlot unmarked = p;
  unmarked.marker_label.clear();
  EXPECT_THAT(vae::lines_svg(unmarked), ::testing::Not(::testing::HasSubstr("class=\"marker\"")));
}

// A metric that never moves (the seed protocol's RMSE of a collapsed VAE) is a line across the
// middle of its panel, and a run of one epoch is drawn as dots.
TEST(LinesSvg, FlatSeriesAndASingleEpoch) {
  vae::LinePlot flat;
  flat.x = {1, 2, 3};
  flat.panels.push_back({"rmse", {{"RMSE", {2.7554, 2.7554, 2.7554}}}});
  const std::string svg = vae::lines_svg(flat);
  EXPECT_THAT(svg, ::testing::Not(::testing::HasSubstr("nan")));
  const std::vector<Polyline> pl = polylines(svg);
  ASSERT_EQ(pl.size(), 1u);
  const std::vector<std::array<double, 4>> f = frames(svg);
  ASSERT_EQ(f.size(), 1u);
  for (auto [x, y] : pl[0].pts) EXPECT_NEAR(y, f[0][1] + f[0][3] / 2, 0.06);

  vae::LinePlot one;
  one.x = {1};
  one.panels.push_back({"loss", {{"train", {0.5}}, {"test", {NAN}}}});
  const std::string s1 = vae::lines_svg(one);
  EXPECT_THAT(s1, ::testing::Not(::testing::HasSubstr("nan")));
  EXPECT_TRUE(polylines(s1).empty());
  EXPECT_THAT(s1, ::testing::HasSubstr("<circle class=\"series0\""));
  EXPECT_THAT(s1, ::testing::Not(::testing::HasSubstr("<circle class=\"series1\"")));
}

TEST(LinesSvg, RefusesBadInput) {
  vae::LinePlot p = two_panels();
  p.x[2] = 2;  // not increasing
  EXPECT_THROW(vae::lines_svg(p), vae::VaeError);
  p = two_panels();
  p.panels[1].series[0].y.pop_back();
  EXPECT_THROW(vae::lines_svg(p), vae::VaeError);
  p = two_panels();
  p.panels[1].series.clear();
  EXPECT_THROW(vae::lines_svg(p), vae::VaeError);
  p = two_panels();
  p.x.clear();
  for (auto& panel : p.panels)
    for (auto& sr : panel.series) sr.y.clear();
  EXPECT_THROW(vae::lines_svg(p), vae::VaeError);
}

}  // namespace

namespace {

struct Bar {
  int panel, group;
  double y, h;
  bool outlined;
};

// The bars of bars_svg with the panel they sit in.
std::vector<Bar> bars_of(const std::string& svg) {
  std::vector<Bar> out;
  const std::regex panel_re("<g class=\"panel([0-9]+)\">"),
      bar_re("<rect class=\"bar([0-9]+)\" x=\"[-0-9.]+\" y=\"([-0-9.]+)\" width=\"[0-9.]+\" height=\"([0-9.]+)\" fill=\"#[0-9a-f]+\"( stroke)?");
  int panel = -1;
  std::istringstream in(svg);
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_search(line, m, panel_re)) panel = std::stoi(m[1]);
    if (std::regex_search(line, m, bar_re))
      out.push_back({panel, std::stoi(m[1]), std::stod(m[2]), std::stod(m[3]), m[4].matched});
  }
  return out;
}

vae::BarPlot bar_plot_sample() {
  vae::BarPlot p;
  p.title = "Models <compared>";
  p.groups = {"vae", "multvae", "ease"};
  p.panels.push_back({"ndcg@20", {0.2, 0.4, std::nan("")}, {false, true, false}});
  p.panels.push_back({"rmse", {3.0, 1.5, 0.0}, {}});
  return p;
}

}  // namespace

TEST(BarsSvg, OneBarPerFiniteValueScaledToItsPanelsMaximum) {
  const std::string svg = vae::bars_svg(bar_plot_sample());
  const std::vector<Bar> bars = bars_of(svg);
  ASSERT_EQ(bars.size(), 5u) << svg;  // the NaN is no bar
  // Panel 0: heights in proportion to the values, the largest full height; the best outlined.
  EXPECT_EQ(bars[0].panel, 0);
  EXPECT_EQ(bars[0].group, 0);
  EXPECT_EQ(bars[1].group, 1);
  EXPECT_NEAR(bars[0].h / bars[1].h, 0.5, 1e-3);
  EXPECT_FALSE(bars[0].outlined);
  EXPECT_TRUE(bars[1].outlined);
  EXPECT_NEAR(bars[0].y + bars[0].h, bars[1].y + bars[1].h, 0.11);  // one baseline
  EXPECT_THAT(svg, ::testing::HasSubstr(">n/a</text>"));
  // Panel 1 has its own scale: 3.0 there is as tall as 0.4 in panel 0; 0 is a bar of no height.
  EXPECT_EQ(bars[2].panel, 1);
  EXPECT_NEAR(bars[2].h, bars[1].h, 0.11);
  EXPECT_NEAR(bars[3].h / bars[2].h, 0.5, 1e-3);
  EXPECT_EQ(bars[4].h, 0.0);
  // Values printed, legend in bar order, markup escaped.
  EXPECT_THAT(svg, ::testing::HasSubstr(">0.4</text>"));
  EXPECT_THAT(svg, ::testing::HasSubstr("<title>multvae: 1.5</title>"));
  EXPECT_THAT(svg, ::testing::HasSubstr("Models &lt;compared&gt;"));
  EXPECT_LT(svg.find(">vae</text>"), svg.find(">multvae</text>"));
  EXPECT_LT(svg.find(">multvae</text>"), svg.find(">ease</text>"));
}

TEST(BarsSvg, RefusesBadInput) {
  auto refused = [](vae::BarPlot p, const char* what) {
    EXPECT_THROW(vae::bars_svg(p), vae::VaeError) << what;
  };
  vae::BarPlot p = bar_plot_sample();
  p.groups.clear();
  refused(p, "no groups");
  p = bar_plot_sample();
  p.panels.clear();
  refused(p, "no panels");
  p = bar_plot_sample();
  p.panels[1].values.pop_back();
  refused(p, "values not one per group");
  p = bar_plot_sample();
  p.panels[0].best.pop_back();
  refused(p, "best flags not one per group");
  p = bar_plot_sample();
  p.panels[1].values[0] = -1;
  refused(p, "negative");
  p = bar_plot_sample();
  p.panels[1].values[0] = INFINITY;
  refused(p, "infinite");
  p = bar_plot_sample();
  p.panels[0].values = {0, 0, 0};  // all zero: an empty axis, drawn
  EXPECT_EQ(bars_of(vae::bars_svg(p)).size(), 6u);
}
