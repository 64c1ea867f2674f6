// report.html: one page per --out run, the notebook view of it: the command, everything it
// printed, and its pictures inline (learning curves, the t-SNE map, the compare bars), so a run
// can be read (and shared) as one file.
#pragma once
#include <string>
#include <vector>

namespace vae {

struct ReportPicture {
  std::string name;  // its file, relative to the report ("curves.svg", "multvae/curves.svg")
  std::string svg;   // the file's text: an <svg> element
};

// The page, self-contained (no script, no external file). The console text is shown as the
// terminal left it: a line rewritten with carriage returns (the progress bar) keeps its last state.
std::string run_report_html(const std::string& command, const std::string& console,
                            const std::vector<ReportPicture>& pictures);

// Text for HTML content and attributes: & < > " escaped.
std::string html_escape(const std::string& s);

}  // namespace vae
