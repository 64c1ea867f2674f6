// Error types shared by every layer. All user-facing failures are exceptions carrying
// enough context (file, line, problem) for the CLI to print one clear message.
#pragma once
#include <stdexcept>
#include <string>

namespace vae {

// Bad input data: names the file and (1-based) line; line 0 = the file as a whole.
class DataError : public std::runtime_error {
 public:
  DataError(std::string file, long line, const std::string& problem)
      : std::runtime_error(format(file, line, problem)), file_(std::move(file)), line_(line) {}
  const std::string& file() const { return file_; }
  long line() const { return line_; }

 private:
  static std::string format(const std::string& file, long line, const std::string& problem) {
    return line > 0 ? file + ":" + std::to_string(line) + ": " + problem : file + ": " + problem;
  }
  std::string file_;
  long line_;
};

// Bad command-line usage or inconsistent options (CLI exit code 2).
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Internal contract violation (shape mismatch at an API boundary, backend failure).
class VaeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A failure the CUDA runtime or one of its libraries reported (CUDA_CHECK and its kin), or a
// limit of the device's graph steps. Kept apart from the other VaeErrors so that a training
// step whose graph capture fails can be retried as plain launches (Backend::run_step).
class CudaError : public VaeError {
 public:
  using VaeError::VaeError;
};

}  // namespace vae

#define VAE_STR2(x) #x
#define VAE_STR(x) VAE_STR2(x)
// Shape/contract checks at API boundaries; throws with file:line so a mismatch is findable.
#define VAE_CHECK(cond, msg)                                                                   \
  do {                                                                                         \
    if (!(cond))                                                                               \
      throw ::vae::VaeError(std::string(__FILE__ ":" VAE_STR(__LINE__) ": ") + (msg) + \
                            " [" #cond "]");                                                   \
  } while (0)
