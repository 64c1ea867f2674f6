#include "core/temp_files.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/error.h"

namespace vae {

namespace {

// Fixed storage: the signal handler may only read plain memory and call unlink().
constexpr int kSlots = 128;
constexpr size_t kPathMax = 4096;
char g_paths[kSlots][kPathMax];
std::atomic<int> g_used[kSlots];  // 0 free, 1 being filled, 2 registered

extern "C" void remove_temp_files_and_die(int sig) {
  for (int i = 0; i < kSlots; ++i)
    if (g_used[i].load(std::memory_order_acquire) == 2) ::unlink(g_paths[i]);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

}  // namespace

int register_temp_file(const std::string& path) {
  if (path.size() >= kPathMax) return -1;
  for (int i = 0; i < kSlots; ++i) {
    int expected = 0;
    if (g_used[i].compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
      std::memcpy(g_paths[i], path.c_str(), path.size() + 1);
      g_used[i].store(2, std::memory_order_release);
      return i;
    }
  }
  return -1;
}

void forget_temp_file(int slot) {
  if (slot >= 0 && slot < kSlots) g_used[slot].store(0, std::memory_order_release);
}

void remove_temp_files_on_signals() {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    // A signal the parent chose to ignore (nohup; background jobs and SIGINT) stays ignored.
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
    struct sigaction sa {};
    sa.sa_handler = remove_temp_files_and_die;
    sigemptyset(&sa.sa_mask);
    ::sigaction(sig, &sa, nullptr);
  }
}

std::string link_target(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path p = path;
  for (int hops = 0; fs::is_symlink(p, ec); ++hops) {
    if (hops == 40) throw DataError(path, 0, "too many levels of symbolic links");
    const fs::path t = fs::read_symlink(p, ec);
    if (ec) throw DataError(path, 0, "cannot read the symbolic link: " + ec.message());
    p = t.is_absolute() ? t : p.parent_path() / t;
  }
  return p.string();
}

int own_stream_fd(const std::string& path) {
  if (path == "/dev/stdout") return 1;
  if (path == "/dev/stderr") return 2;
  for (const char* prefix : {"/dev/fd/", "/proc/self/fd/"}) {
    const size_t n = std::strlen(prefix);
    if (path.size() > n && path.size() <= n + 6 && path.compare(0, n, prefix) == 0 &&
        path.find_first_not_of("0123456789", n) == std::string::npos)
      return std::stoi(path.substr(n));
  }
  return -1;
}

void write_atomically(const std::string& given, const std::function<void(std::ostream&)>& body) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (const int fd = own_stream_fd(given); fd >= 0) {
    // Opening the path anew would truncate a file the shell appends to (>>) and start at its
    // offset 0; renaming over the file it leads to would unlink it under the shell. The open
    // descriptor keeps both: what is written lands where the stream's next write would.
    std::ostringstream text;
    body(text);
    const std::string s = text.str();
    std::cout.flush();  // what the program printed before goes first
    std::cerr.flush();
    std::fflush(nullptr);
    for (size_t done = 0; done < s.size();) {
      const ssize_t w = ::write(fd, s.data() + done, s.size() - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) throw DataError(given, 0, std::string("write failed: ") + std::strerror(errno));
      done += static_cast<size_t>(w);
    }
    return;
  }
  const fs::file_status st = fs::status(given, ec);  // through links
  if (fs::is_directory(st)) throw DataError(given, 0, "is a directory, not a file");
  if (fs::exists(st) && !fs::is_regular_file(st)) {
    // A device, FIFO or socket (/dev/stdout, a named pipe) is written as it is: renaming a file
    // over it would replace the node itself.
    std::ofstream f(given, std::ios::binary);
    if (!f) throw DataError(given, 0, "cannot open for writing");
    body(f);
    f.flush();
    if (!f) throw DataError(given, 0, "write failed");
    return;
  }
  // A symlink is written through: its target is replaced and the link kept (renaming over the
  // link would turn it into a plain file).
  const std::string path = link_target(given);
  const std::string tmp = path + ".tmp";
  struct RemoveTmp {  // a failed write leaves no partial path.tmp behind
    const std::string& tmp;
    bool keep = false;
    ~RemoveTmp() {
      std::error_code ec;
      if (!keep) std::filesystem::remove(tmp, ec);
    }
  } cleanup{tmp};
  const TempFileGuard on_signal(tmp);
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw DataError(tmp, 0, "cannot open for writing");
    body(f);
    f.flush();
    if (!f) throw DataError(tmp, 0, "write failed (disk full?)");
  }
  fs::rename(tmp, path, ec);
  if (ec) throw DataError(path, 0, "cannot rename " + tmp + ": " + ec.message());
  cleanup.keep = true;
}

}  // namespace vae
