#include "core/temp_files.h"

#include <fcntl.h>
#include <poll.h>
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
#include <limits>
#include <vector>

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
  // write() is async-signal-safe; the exit status (128 + sig) says which signal.
  static const char kMsg[] = "\nvae_gpu: interrupted (no half-written file is left behind)\n";
  ssize_t ignored = ::write(2, kMsg, sizeof kMsg - 1);
  (void)ignored;
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

DeferSignals::DeferSignals() {
  sigset_t block;
  sigemptyset(&block);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&block, sig);
  pthread_sigmask(SIG_BLOCK, &block, &old_);
}

DeferSignals::~DeferSignals() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }

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

namespace {
// The PID of a temporary named NAME.tmp.PID.N (-1 when the name is not one), and NAME.
int64_t temporary_pid(const std::string& file, std::string& name) {
  const size_t tmp = file.rfind(".tmp.");
  if (tmp == std::string::npos || tmp == 0) return -1;
  const std::string rest = file.substr(tmp + 5);
  const size_t dot = rest.find('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == rest.size() || dot > 9) return -1;
  const std::string pid = rest.substr(0, dot), n = rest.substr(dot + 1);
  if (pid.find_first_not_of("0123456789") != std::string::npos || n.find_first_not_of("0123456789") != std::string::npos ||
      n.size() > 18)
    return -1;
  name = file.substr(0, tmp);
  if (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0) name.resize(name.size() - 4);  // staging
  return std::stoll(pid);
}
}  // namespace

std::string own_temp_path(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

void remove_dead_temporaries(const std::string& dir, const std::string& name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (fs::directory_iterator it(dir.empty() ? "." : dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string base;
    const int64_t pid = temporary_pid(it->path().filename().string(), base);
    if (pid <= 0 || pid > std::numeric_limits<pid_t>::max() || pid == ::getpid()) continue;
    if (!name.empty() && base != name) continue;
    std::error_code type_ec;
    if (!fs::is_regular_file(fs::symlink_status(it->path(), type_ec))) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to judge
    std::error_code rm;
    fs::remove(it->path(), rm);
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

namespace {

bool g_closed_at_start[3] = {false, false, false};

// The descriptor one normalised absolute path names as the process's own stream, or -1.
int stream_name_fd(const std::string& s) {
  if (s == "/dev/stdin") return 0;
  if (s == "/dev/stdout") return 1;
  if (s == "/dev/stderr") return 2;
  const std::string pid = "/proc/" + std::to_string(::getpid()) + "/fd/";
  for (const std::string& prefix : {std::string("/dev/fd/"), std::string("/proc/self/fd/"),
                                    std::string("/proc/thread-self/fd/"), pid}) {
    const size_t n = prefix.size();
    if (s.size() <= n || s.size() > n + 9 || s.compare(0, n, prefix) != 0) continue;
    // As the kernel lists them: digits, no leading zero (fd 01 does not exist).
    if (s.find_first_not_of("0123456789", n) != std::string::npos || (s[n] == '0' && s.size() > n + 1)) return -1;
    return std::stoi(s.substr(n));
  }
  return -1;
}

// Slashes collapsed and dot segments resolved ("//dev/./stdout" is /dev/stdout; lexically_normal
// keeps only a trailing slash).
std::filesystem::path normal(const std::filesystem::path& p) {
  std::string s = p.lexically_normal().string();
  if (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

void note_standard_streams() {
  for (int fd = 0; fd < 3; ++fd) {
    if (::fcntl(fd, F_GETFL) >= 0) continue;
    g_closed_at_start[fd] = true;
    // Holds the number, so no file opened later (a library, a device) becomes "stdout".
    const int got = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (got >= 0 && got != fd) ::close(got);
  }
}

int own_stream_fd(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path p = normal(fs::absolute(path, ec));
  if (ec) return -1;
  // Every hop of a chain of links: /dev/stdout, a user's link to it, /proc/self/fd/1.
  for (int hops = 0; hops < 40; ++hops) {
    if (const int fd = stream_name_fd(p.string()); fd >= 0) return fd;
    if (!fs::is_symlink(p, ec)) return -1;
    const fs::path t = fs::read_symlink(p, ec);
    if (ec) return -1;
    p = normal(t.is_absolute() ? t : p.parent_path() / t);
  }
  return -1;
}

std::string check_own_stream(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (fd < 3 && g_closed_at_start[fd]) return "descriptor " + std::to_string(fd) + " was closed when the program started";
  if (flags < 0) return "descriptor " + std::to_string(fd) + " is not open";
  if ((flags & O_ACCMODE) == O_RDONLY) return "descriptor " + std::to_string(fd) + " is open for reading only";
  return "";
}

namespace {

// Writes all of [data, data + n) to fd, waiting where a non-blocking descriptor is full.
void write_all(int fd, const char* data, size_t n, const std::string& name) {
  for (size_t done = 0; done < n;) {
    const ssize_t w = ::write(fd, data + done, n - done);
    if (w > 0) {
      done += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd pfd{fd, POLLOUT, 0};
      ::poll(&pfd, 1, -1);
      continue;
    }
    throw DataError(name, 0, w < 0 ? std::string("write failed: ") + std::strerror(errno) : "write failed: nothing written");
  }
}

// Streams into a descriptor through a 64 KiB buffer (a CSV of gigabytes is never held whole).
class FdBuf : public std::streambuf {
 public:
  FdBuf(int fd, std::string name) : fd_(fd), name_(std::move(name)), buf_(1 << 16) {
    setp(buf_.data(), buf_.data() + buf_.size());
  }
  void flush_all() {
    write_all(fd_, pbase(), static_cast<size_t>(pptr() - pbase()), name_);
    setp(buf_.data(), buf_.data() + buf_.size());
  }

 protected:
  int_type overflow(int_type c) override {
    flush_all();
    if (!traits_type::eq_int_type(c, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(c);
      pbump(1);
    }
    return traits_type::not_eof(c);
  }

 private:
  int fd_;
  std::string name_;
  std::vector<char> buf_;
};

}  // namespace

void write_atomically(const std::string& given, const std::function<void(std::ostream&)>& body) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (const int fd = own_stream_fd(given); fd >= 0) {
    // Opening the path anew would truncate a file the shell appends to (>>) and start at its
    // offset 0; renaming over the file it leads to would unlink it under the shell. The open
    // descriptor keeps both: what is written lands where the stream's next write would.
    if (const std::string why = check_own_stream(fd); !why.empty()) throw DataError(given, 0, why);
    std::cout.flush();  // what the program printed before goes first
    std::cerr.flush();
    std::fflush(nullptr);
    FdBuf buf(fd, given);
    std::ostream out(&buf);
    out.exceptions(std::ios::badbit);  // the buffer's DataError is rethrown, not swallowed
    body(out);
    buf.flush_all();
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
  remove_dead_temporaries(std::filesystem::path(path).parent_path().string(), std::filesystem::path(path).filename().string());
  // This process's own temporary, so two writers of one file at once each write a whole file
  // (the last rename wins) instead of interleaving into one shared path.tmp.
  const std::string tmp = own_temp_path(path);
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
    // Through a descriptor so the data reaches the disk (fsync) before the rename, as
    // write_binary_atomically does for model files: a crash leaves the old file or the new one.
    // 0666 less the umask, as an ofstream would create it.
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) throw DataError(tmp, 0, std::string("cannot open for writing: ") + std::strerror(errno));
    struct Close {
      int fd;
      ~Close() {
        if (fd >= 0) ::close(fd);
      }
    } closer{fd};
    FdBuf buf(fd, tmp);
    std::ostream out(&buf);
    out.exceptions(std::ios::badbit);  // the buffer's DataError (disk full, ...) is rethrown
    body(out);
    buf.flush_all();
    if (::fsync(fd) != 0) throw DataError(tmp, 0, std::string("write failed: ") + std::strerror(errno));
    closer.fd = -1;
    if (::close(fd) != 0) throw DataError(tmp, 0, std::string("write failed: ") + std::strerror(errno));
  }
  fs::rename(tmp, path, ec);
  if (ec) throw DataError(path, 0, "cannot rename " + tmp + ": " + ec.message());
  cleanup.keep = true;
}

}  // namespace vae
