#include "core/console_capture.h"

#include <cctype>
#include <iostream>
#include <stdexcept>

namespace vae {

namespace {
ConsoleCapture* g_active = nullptr;
}

ConsoleCapture::ConsoleCapture(std::string command)
    : command_(std::move(command)), out_(std::cout.rdbuf(), *this), err_(std::cerr.rdbuf(), *this) {
  if (g_active) throw std::logic_error("ConsoleCapture: a capture is already active");
  std::cout.rdbuf(&out_);
  std::cerr.rdbuf(&err_);
  g_active = this;
}

ConsoleCapture::~ConsoleCapture() {
  std::cout.flush();
  std::cout.rdbuf(out_.target());
  std::cerr.rdbuf(err_.target());
  g_active = nullptr;
}

const ConsoleCapture* ConsoleCapture::active() { return g_active; }

// Never throws: the copy is a convenience, and the terminal (written first) must not lose a
// line, least of all the out-of-memory message, because the copy could not grow.
void ConsoleCapture::keep(const char* s, size_t n) noexcept {
  if (truncated_) return;
  try {
    if (text_.size() + n > kMaxBytes) {
      text_.append(s, kMaxBytes - text_.size());
      text_ += "\n[... the rest of the output is not copied here: more than 8 MiB]\n";
      truncated_ = true;
      return;
    }
    text_.append(s, n);
  } catch (...) {
    truncated_ = true;
    try {
      text_ += "\n[... the rest of the output is not copied here: out of memory]\n";
    } catch (...) {
    }
  }
}

ConsoleCapture::Tee::int_type ConsoleCapture::Tee::overflow(int_type c) {
  if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
  const char ch = traits_type::to_char_type(c);
  const int_type r = to_->sputc(ch);
  owner_.keep(&ch, 1);
  return r;
}

std::streamsize ConsoleCapture::Tee::xsputn(const char* s, std::streamsize n) {
  const std::streamsize r = to_->sputn(s, n);
  owner_.keep(s, static_cast<size_t>(n));
  return r;
}

int ConsoleCapture::Tee::sync() { return to_->pubsync(); }

std::string shell_command_line(int argc, const char* const* argv) {
  std::string line;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    bool plain = !a.empty();
    for (char c : a)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || std::string("-_./=:,@+%").find(c) != std::string::npos))
        plain = false;
    std::string quoted;
    if (plain) {
      quoted = a;
    } else {
      quoted = "'";
      for (char c : a) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
      quoted += "'";
    }
    line += (i ? " " : "") + quoted;
  }
  return line;
}

}  // namespace vae
