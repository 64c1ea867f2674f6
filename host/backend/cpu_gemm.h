// The CPU backend's portable GEMM: used when OpenBLAS is absent, and compiled always so the
// tests can check it against naive loops whichever path the backend takes.
#pragma once
#include <cstdint>
#include <functional>

namespace vae {

constexpr int64_t kReferenceGemmKc = 128;

// C (m × n, leading dimension ldc) = alpha · op(A) · op(B) + beta · C, all row-major;
// op(A) is m × k (A stored k × m when trans_a), op(B) is k × n (B stored n × k when trans_b).
// BLAS conventions: beta == 0 overwrites C without reading it; k == 0 only scales C.
// The order of the sums, which fixes the bits: C is scaled by beta first (beta == 0: zeroed),
// then for each panel of kReferenceGemmKc consecutive k, in order, acc = Σ op(A)[i][p]·op(B)[p][j]
// is summed in T from zero in p order (each product rounded, then added: no FMA) and
// C[i][j] += alpha · acc. Large GEMMs are cut into tasks (rows × column panels) shared by a pool
// of threads, but every element is summed by one thread in that order, so the result has the
// same bits for any number of threads (VAE_CPU_THREADS, default the hardware's).
template <typename T>
void reference_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha,
                    const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// Threads reference_gemm may use (the caller included).
int reference_gemm_threads();

// fn(t) for every t in [0, tasks) on reference_gemm's thread pool (the caller included; one run
// at a time); returns when all are done, then rethrows the first exception a task threw. Tasks
// run in any order on any thread, so for bits that do not depend on the thread count each task
// must write only its own outputs. Called from inside a task, it runs on that task's thread.
void cpu_parallel_for(int64_t tasks, const std::function<void(int64_t)>& fn);

}  // namespace vae
