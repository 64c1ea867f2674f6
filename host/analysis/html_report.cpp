#include "analysis/html_report.h"

#include <algorithm>
#include <cctype>
#include <string_view>

namespace vae {

std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size() + s.size() / 16);
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

namespace {

// What a terminal shows of each line: the text after its last carriage return.
std::string as_terminal_shows(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find('\n', start);
    const bool newline = end != std::string::npos;
    if (!newline) end = s.size();
    size_t from = start;
    // A trailing "\r" (before the newline) shows the line as it was; an inner one rewrote it.
    size_t stop = end;
    while (stop > from && s[stop - 1] == '\r') --stop;
    // Searched within the line only: a search back through the whole text is quadratic.
    const size_t cr = std::string_view(s).substr(from, stop - from).rfind('\r');
    if (cr != std::string_view::npos) from += cr + 1;
    out.append(s, from, stop - from);
    if (newline) out += '\n';
    start = end + 1;
  }
  return out;
}

// An id for a picture's anchor: its position (names like "a-b" and "a.b" would share an id) and
// its name with anything but letters and digits as '-'.
std::string anchor(size_t i, const std::string& name) {
  std::string a = "fig" + std::to_string(i + 1) + "-";
  for (char c : name) a += std::isalnum(static_cast<unsigned char>(c)) ? c : '-';
  return a;
}

}  // namespace

std::string run_report_html(const std::string& command, const std::string& console,
                            const std::vector<ReportPicture>& pictures) {
  // The run's own pictures first (compare.svg, tsne.svg, curves.svg), then those of its sub-runs.
  std::vector<ReportPicture> pics = pictures;
  std::stable_sort(pics.begin(), pics.end(), [](const ReportPicture& a, const ReportPicture& b) {
    return (a.name.find('/') != std::string::npos) < (b.name.find('/') != std::string::npos);
  });
  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  h += "<title>" + html_escape(command) + "</title>\n";
  h += "<style>\n"
       "body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }\n"
       "code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; }\n"
       "pre { background: #f6f8fa; padding: 1em; overflow-x: auto; font-size: 13px; line-height: 1.35; }\n"
       "figure { margin: 1.5em 0; }\n"
       "figure svg { max-width: 100%; height: auto; border: 1px solid #ddd; }\n"
       "figcaption { color: #555; font-size: 0.9em; }\n"
       "</style>\n</head>\n<body>\n";
  h += "<h1>vae_gpu run</h1>\n<p><code>" + html_escape(command) + "</code></p>\n";
  h += "<p><a href=\"#output\">Output</a>";
  for (size_t i = 0; i < pics.size(); ++i)
    h += " &middot; <a href=\"#" + anchor(i, pics[i].name) + "\">" + html_escape(pics[i].name) + "</a>";
  h += "</p>\n";
  h += "<h2 id=\"output\">Output</h2>\n<pre>" + html_escape(as_terminal_shows(console)) + "</pre>\n";
  if (!pics.empty()) h += "<h2>Pictures</h2>\n";
  for (size_t i = 0; i < pics.size(); ++i) {
    const ReportPicture& p = pics[i];
    h += "<figure id=\"" + anchor(i, p.name) + "\">\n" + p.svg;
    if (!p.svg.empty() && p.svg.back() != '\n') h += "\n";
    h += "<figcaption>" + html_escape(p.name) + " (<a href=\"" + html_escape(p.name) + "\">the file</a>)</figcaption>\n";
    h += "</figure>\n";
  }
  h += "</body>\n</html>\n";
  return h;
}

}  // namespace vae
