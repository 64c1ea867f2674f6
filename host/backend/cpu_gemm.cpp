#include "backend/cpu_gemm.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace vae {

namespace {
// Panel sizes: a packed op(B) panel (kKc × kNc) stays in L2 while the rows of A stream past it.
// The micro-kernel keeps a kMr × kNr block of C in registers across the whole kKc loop.
constexpr int64_t kKc = kReferenceGemmKc;
constexpr int64_t kNc = 256;
constexpr int64_t kMr = 4;
constexpr int64_t kNr = 16;
// A task is kRowsPerTask rows of C by one kNc-column panel, over all of k in panel order, so
// every element of C is summed by one thread in one fixed order: the bits do not depend on the
// number of threads. Below kParallelFlops a GEMM runs on the calling thread (waking the pool
// costs more than it saves).
constexpr int64_t kRowsPerTask = 64;
constexpr int64_t kPanel = kKc * ((kNc + kNr - 1) / kNr * kNr);  // scratch: B panel, then A block
constexpr double kParallelFlops = 4e6;

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define VAE_GEMM_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VAE_GEMM_CLONES
#endif

// Threads that share the tasks of one GEMM (the caller is one of them). VAE_CPU_THREADS sets
// their number (default: the CPUs this process may use, at most 32; given, at most
// kMaxThreads); 1 keeps every GEMM on the caller.
constexpr int kMaxThreads = 256;

class GemmPool {
 public:
  static GemmPool& get() {
    static GemmPool* pool = new GemmPool();  // never destroyed: workers may outlive main()
    return *pool;
  }
  int threads() const { return threads_; }

  // fn(t) for every t in [0, tasks), spread over the pool; returns when all are done, then
  // rethrows the first exception a task threw (on the pool the other tasks still ran; run inline
  // on the calling thread, the tasks after the throwing one do not).
  void run(int64_t tasks, const std::function<void(int64_t)>& fn) {
    // A forked child has no workers (only the forking thread survives a fork). A run from inside
    // a task stays on its thread: the pool is busy with the outer run (waiting would deadlock).
    if (workers_.empty() || tasks <= 1 || getpid() != pid_ || in_task_) {
      for (int64_t t = 0; t < tasks; ++t) fn(t);
      return;
    }
    std::lock_guard<std::mutex> serial(run_mu_);  // one GEMM at a time in the pool
    {
      std::lock_guard<std::mutex> lk(mu_);
      fn_ = &fn;
      tasks_ = tasks;
      next_.store(0);
      error_ = nullptr;
      busy_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    wake_.notify_all();
    work();
    std::unique_lock<std::mutex> lk(mu_);
    done_.wait(lk, [&] { return busy_ == 0; });  // fn must outlive every worker's use of it
    fn_ = nullptr;
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  GemmPool() : pid_(getpid()) {
    int n = usable_cpus();
    if (const char* e = std::getenv("VAE_CPU_THREADS"); e && *e) {
      // Said once, when the pool starts: a typo would otherwise silently use every core.
      const char* b = e;
      while (*b == ' ' || *b == '\t') ++b;
      char* end = nullptr;
      errno = 0;
      const long v = std::strtol(b, &end, 10);
      while (end && (*end == ' ' || *end == '\t')) ++end;
      if (end != b && *end == '\0' && errno == 0 && v >= 1 && *b != '+') {
        n = static_cast<int>(std::min<long>(v, kMaxThreads));
        // std::cerr, not stderr: the notes belong in a run's report.html copy of the console.
        if (v > kMaxThreads) std::cerr << "note: VAE_CPU_THREADS=" << v << " is capped at " << kMaxThreads << " threads\n";
      } else {
        std::cerr << "note: VAE_CPU_THREADS='" << std::string(e).substr(0, 40) << "' is not a positive whole number; using "
                  << n << " threads\n";
      }
    }
    for (int i = 1; i < n; ++i) {
      try {
        workers_.emplace_back([this] {
          // Process signals go to the main thread: the handler that removes temporaries
          // (core/temp_files.h) then never runs beside the thread that registers them.
          sigset_t block;
          sigemptyset(&block);
          for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&block, sig);
          pthread_sigmask(SIG_BLOCK, &block, nullptr);
          loop();
        });
      } catch (const std::system_error&) {
        break;  // as many threads as the system gives
      }
    }
    for (std::thread& w : workers_) w.detach();
    threads_ = 1 + static_cast<int>(workers_.size());
  }

  // The CPUs this process may run on (its affinity mask, which containers and taskset narrow),
  // at most 32.
  static int usable_cpus() {
    int n = 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
    if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
    return std::clamp(n, 1, 32);
  }

  void work() {
    in_task_ = true;
    for (int64_t t; (t = next_.fetch_add(1)) < tasks_;) {
      try {
        (*fn_)(t);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        if (!error_) error_ = std::current_exception();
      }
    }
    in_task_ = false;
  }

  void loop() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mu_);
        wake_.wait(lk, [&] { return generation_ != seen; });
        seen = generation_;
      }
      work();
      std::lock_guard<std::mutex> lk(mu_);
      if (--busy_ == 0) done_.notify_one();
    }
  }

  const pid_t pid_;
  int threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex run_mu_, mu_;
  std::condition_variable wake_, done_;
  uint64_t generation_ = 0;
  int busy_ = 0;
  const std::function<void(int64_t)>* fn_ = nullptr;
  std::exception_ptr error_;  // the first exception a task of the current run threw
  int64_t tasks_ = 0;
  std::atomic<int64_t> next_{0};
  static thread_local bool in_task_;  // this thread is running a task of the pool
};
thread_local bool GemmPool::in_task_ = false;

// 32-byte vectors (one AVX register; two SSE registers in the baseline clone).
template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(32)));
  static constexpr int lanes = 32 / sizeof(T);
};
static_assert(kNr % Vec<double>::lanes == 0 && kNr % Vec<float>::lanes == 0, "kNr: whole vectors");

struct GemmArgs {
  bool trans_a, trans_b;
  int64_t m, n, k;
  const void* a;
  int64_t lda;
  const void* b;
  int64_t ldb;
  void* c;
  int64_t ldc;
};

// C[i0 : i1, j0 : j0 + nb] += alpha · op(A) · op(B) over those rows and columns, k panel by
// k panel; panel (kKc × ld_panel) and apack (kKc × kMr) are the caller's scratch.
template <typename T>
__attribute__((always_inline)) inline void gemm_task(const GemmArgs& g, T alpha, int64_t i0_begin,
                                                     int64_t i0_end, int64_t j0, T* panel, T* apack) {
  const T* a = static_cast<const T*>(g.a);
  const T* b = static_cast<const T*>(g.b);
  T* c = static_cast<T*>(g.c);
  const int64_t ld_panel = (kNc + kNr - 1) / kNr * kNr;
  const int64_t nb = std::min(kNc, g.n - j0);
  // Panel rows are padded to a multiple of kNr with zeros so the micro-kernel never branches.
  const int64_t nb_pad = (nb + kNr - 1) / kNr * kNr;
  for (int64_t p0 = 0; p0 < g.k; p0 += kKc) {
    const int64_t kb = std::min(kKc, g.k - p0);
    // Pack op(B)[p0 : p0+kb, j0 : j0+nb] row-major (unit stride for both transposes).
    for (int64_t p = 0; p < kb; ++p) {
      T* dst = panel + p * ld_panel;
      if (!g.trans_b) {
        const T* src = b + (p0 + p) * g.ldb + j0;
        std::copy(src, src + nb, dst);
      } else {
        for (int64_t j = 0; j < nb; ++j) dst[j] = b[(j0 + j) * g.ldb + (p0 + p)];
      }
      std::fill(dst + nb, dst + nb_pad, T(0));
    }
    for (int64_t i0 = i0_begin; i0 < i0_end; i0 += kMr) {
      const int64_t mr = std::min(kMr, i0_end - i0);
      // Pack op(A)[i0 : i0+kMr, p0 : p0+kb] as kb columns of kMr (rows past m are zeros).
      for (int64_t p = 0; p < kb; ++p)
        for (int64_t r = 0; r < kMr; ++r) {
          const int64_t i = i0 + r, q = p0 + p;
          apack[p * kMr + r] = r < mr ? (g.trans_a ? a[q * g.lda + i] : a[i * g.lda + q]) : T(0);
        }
      for (int64_t jj = 0; jj < nb; jj += kNr) {
        const int64_t nr = std::min(kNr, nb - jj);
        // acc[r][j] += a[r] · b[j], element by element (a multiply, then an add: no FMA); the
        // vector types only make the compiler keep the kMr × kNr block in registers.
        using V = typename Vec<T>::type;
        constexpr int kL = Vec<T>::lanes, kV = static_cast<int>(kNr) / kL;
        V acc[kMr][kV];
#pragma GCC unroll 4
        for (int r = 0; r < kMr; ++r)
#pragma GCC unroll 4
          for (int v = 0; v < kV; ++v) acc[r][v] = V{};
        for (int64_t p = 0; p < kb; ++p) {
          const T* av = apack + p * kMr;
          const T* bp = panel + p * ld_panel + jj;
          V bv[kV];
#pragma GCC unroll 4
          for (int v = 0; v < kV; ++v) std::memcpy(&bv[v], bp + v * kL, sizeof(V));
#pragma GCC unroll 4
          for (int r = 0; r < kMr; ++r)
#pragma GCC unroll 4
            for (int v = 0; v < kV; ++v) acc[r][v] += bv[v] * av[r];
        }
        for (int64_t r = 0; r < mr; ++r) {
          T* ci = c + (i0 + r) * g.ldc + j0 + jj;
          T row[kNr];
          std::memcpy(row, acc[r], sizeof row);
          for (int64_t j = 0; j < nr; ++j) ci[j] += alpha * row[j];
        }
      }
    }
  }
}

// One instance per type, compiled for AVX2 and for baseline x86-64: wider vectors, the same
// operations on every element (no FMA: -ffp-contract=off), so both clones give the same bits.
VAE_GEMM_CLONES void run_task(const GemmArgs& g, float alpha, int64_t i0, int64_t i1, int64_t j0, float* panel) {
  gemm_task<float>(g, alpha, i0, i1, j0, panel, panel + kPanel);
}
VAE_GEMM_CLONES void run_task(const GemmArgs& g, double alpha, int64_t i0, int64_t i1, int64_t j0, double* panel) {
  gemm_task<double>(g, alpha, i0, i1, j0, panel, panel + kPanel);
}
}  // namespace

int reference_gemm_threads() { return GemmPool::get().threads(); }

void cpu_parallel_for(int64_t tasks, const std::function<void(int64_t)>& fn) {
  GemmPool::get().run(tasks, fn);
}

template <typename T>
void reference_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha,
                    const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  for (int64_t i = 0; i < m; ++i) {
    T* ci = c + i * ldc;
    if (beta == T(0)) {
      std::fill(ci, ci + n, T(0));
    } else if (beta != T(1)) {
      for (int64_t j = 0; j < n; ++j) ci[j] *= beta;
    }
  }
  if (k <= 0 || alpha == T(0)) return;

  const GemmArgs g{trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc};
  const int64_t row_tasks = (m + kRowsPerTask - 1) / kRowsPerTask;
  const int64_t col_tasks = (n + kNc - 1) / kNc;
  auto task = [&](int64_t t) {
    thread_local std::vector<T> panel;
    panel.resize(static_cast<size_t>(kPanel + kKc * kMr));
    const int64_t i0 = (t % row_tasks) * kRowsPerTask;
    run_task(g, alpha, i0, std::min(m, i0 + kRowsPerTask), (t / row_tasks) * kNc, panel.data());
  };
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  if (flops < kParallelFlops) {
    for (int64_t t = 0; t < row_tasks * col_tasks; ++t) task(t);
  } else {
    GemmPool::get().run(row_tasks * col_tasks, task);
  }
}

template void reference_gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*,
                                    int64_t, const float*, int64_t, float, float*, int64_t);
template void reference_gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*,
                                     int64_t, const double*, int64_t, double, double*, int64_t);

}  // namespace vae
