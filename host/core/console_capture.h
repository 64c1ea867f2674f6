// A copy of what a command prints (std::cout and std::cerr, in the order written) while it still
// goes to the terminal: the console part of the report an --out run leaves behind.
#pragma once
#include <iosfwd>
#include <streambuf>
#include <string>

namespace vae {

class ConsoleCapture {
 public:
  // Tees std::cout and std::cerr from here until destruction; `command` is the command line the
  // report names. One capture at a time: a second one while the first lives is an error.
  explicit ConsoleCapture(std::string command);
  ~ConsoleCapture();
  ConsoleCapture(const ConsoleCapture&) = delete;
  ConsoleCapture& operator=(const ConsoleCapture&) = delete;

  const std::string& text() const { return text_; }
  const std::string& command() const { return command_; }
  // The capture in effect, or null.
  static const ConsoleCapture* active();

  // Past this many bytes the copy stops (the terminal still gets everything) and says so.
  static constexpr size_t kMaxBytes = size_t{8} << 20;

 private:
  class Tee : public std::streambuf {
   public:
    Tee(std::streambuf* to, ConsoleCapture& owner) : to_(to), owner_(owner) {}
    std::streambuf* target() const { return to_; }

   protected:
    int_type overflow(int_type c) override;
    std::streamsize xsputn(const char* s, std::streamsize n) override;
    int sync() override;

   private:
    std::streambuf* to_;
    ConsoleCapture& owner_;
  };
  void keep(const char* s, size_t n) noexcept;

  std::string command_, text_;
  bool truncated_ = false;
  Tee out_, err_;
};

// argv as one shell-quoted line ("vae_gpu --data 'my data' --epochs 20"): arguments with
// characters a shell would read specially are single-quoted.
std::string shell_command_line(int argc, const char* const* argv);

}  // namespace vae
