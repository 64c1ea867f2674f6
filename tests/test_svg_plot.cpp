// The t-SNE picture: every point drawn once in its group's colour, inside the plot, with the
// aspect ratio kept; text escaped; bad input refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <regex>
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
  std::smatch m;
  ASSERT_TRUE(std::regex_search(svg, m, std::regex("<rect x=\"([0-9.]+)\" y=\"([0-9.]+)\" width=\"([0-9.]+)\" height=\"([0-9.]+)\"")));
  const double rx = std::stod(m[1]), ry = std::stod(m[2]), rw = std::stod(m[3]), rh = std::stod(m[4]);
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
  // A single point (zero span) still lands in the middle of the plot.
  ScatterPlot one;
  one.legend = {"only"};
  one.xy = {3.0f, -2.0f};
  one.group = {0};
  const std::vector<Circle> c = point_circles(scatter_svg(one));
  ASSERT_EQ(c.size(), 1u);
  EXPECT_TRUE(std::isfinite(c[0].x) && std::isfinite(c[0].y));
}

}  // namespace
