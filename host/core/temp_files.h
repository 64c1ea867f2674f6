// Temporary files of atomic writes (path.tmp, renamed into place when complete) are listed here
// while they exist, so that a run stopped by Ctrl-C, `timeout` or a closed terminal removes
// them instead of leaving half-written *.tmp files beside the results.
#pragma once
#include <signal.h>

#include <functional>
#include <ostream>
#include <string>

namespace vae {

// Registers a temporary file; returns a slot for forget_temp_file (-1 when the list is full:
// the file is then simply not cleaned up on a signal).
int register_temp_file(const std::string& path);
// The file was renamed into place or removed: no longer the signal handler's business.
void forget_temp_file(int slot);
// Installs handlers for SIGINT, SIGTERM and SIGHUP that unlink every registered temporary and
// then die of the same signal (exit status as without the handler). Signals the process
// inherited as ignored (nohup) stay ignored.
void remove_temp_files_on_signals();

// RAII: SIGINT, SIGTERM and SIGHUP wait (blocked, then delivered) while a commit of several
// renames runs in this thread, so a signal cannot stop it between two renames and leave new and
// old files mixed; they end the run once the folder is whole.
class DeferSignals {
 public:
  DeferSignals();
  ~DeferSignals();
  DeferSignals(const DeferSignals&) = delete;
  DeferSignals& operator=(const DeferSignals&) = delete;

 private:
  sigset_t old_;  // the thread's previous signal mask
};

// RAII: registered for the scope of an atomic write.
class TempFileGuard {
 public:
  explicit TempFileGuard(const std::string& path) : slot_(register_temp_file(path)) {}
  ~TempFileGuard() { forget_temp_file(slot_); }
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;

 private:
  int slot_;
};

// path.tmp.PID.N: a temporary of this process's own for an atomic write of path (N counts the
// process's writes), so two writers of one file never share one; remove_dead_temporaries knows it.
std::string own_temp_path(const std::string& path);

// Removes, in dir, the temporaries of this tool's atomic writes (NAME.tmp.PID.N, and the
// staging NAME.tmp.tmp.PID.N) whose process no longer runs: what a run killed outright
// (SIGKILL, a crash, a power cut) leaves behind. Only those of name when it is given. A live
// process's (or an unknown one's) temporaries stay.
void remove_dead_temporaries(const std::string& dir, const std::string& name = "");

// What a chain of symbolic links at path ends at (path itself when it is none; the end need not
// exist). DataError for a loop or an unreadable link.
std::string link_target(const std::string& path);

// Call first in main: notes which of descriptors 0-2 were closed at start and holds their
// numbers with /dev/null, so that no file opened later is taken for a standard stream.
void note_standard_streams();

// The descriptor a path names the process's own stream by, or -1: /dev/stdin 0, /dev/stdout 1,
// /dev/stderr 2, /dev/fd/N, /proc/self/fd/N (also /proc/thread-self and /proc/<pid>), at any
// hop of a chain of links (a user's link to /dev/stdout) and however spelt (//dev/./stdout).
int own_stream_fd(const std::string& path);
// Why fd cannot take the output ("" when it can): closed (or closed at start), or read-only.
std::string check_own_stream(int fd);

// Writes `path` atomically: body streams into path.tmp.PID.N (registered above, and removed if
// body throws or the write fails), which is renamed into place once complete, so readers see the
// old file or the whole new one. A symbolic link's target is replaced (the link stays); a
// device, FIFO or socket at path (a named pipe, a terminal) is written directly instead. The
// process's own streams (/dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N) are written
// through their open descriptor, whatever they lead to: `--out /dev/stdout >> log` appends.
// DataError for a directory at path, a file that cannot be opened, a failed write (disk full)
// or rename.
void write_atomically(const std::string& path, const std::function<void(std::ostream&)>& body);

}  // namespace vae
