// The CPU backend's portable GEMM: used when OpenBLAS is absent, and compiled always so the
// tests can check it against naive loops whichever path the backend takes.
#pragma once
#include <cstdint>

namespace vae {

// C (m × n, leading dimension ldc) = alpha · op(A) · op(B) + beta · C, all row-major;
// op(A) is m × k (A stored k × m when trans_a), op(B) is k × n (B stored n × k when trans_b).
// BLAS conventions: beta == 0 overwrites C without reading it; k == 0 only scales C.
template <typename T>
void reference_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha,
                    const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

}  // namespace vae
