#include "backend/cpu_gemm.h"

#include <algorithm>
#include <vector>

namespace vae {

namespace {
// Panel sizes: a packed op(B) panel (kKc × kNc) stays in L2 while the rows of A stream past it.
// The micro-kernel keeps a kMr × kNr block of C in registers across the whole kKc loop.
constexpr int64_t kKc = 128;
constexpr int64_t kNc = 256;
constexpr int64_t kMr = 4;
constexpr int64_t kNr = 16;
}  // namespace

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

  // Panel rows are padded to a multiple of kNr with zeros so the micro-kernel never branches.
  const int64_t ld_panel = (kNc + kNr - 1) / kNr * kNr;
  std::vector<T> panel(static_cast<size_t>(kKc * ld_panel));
  for (int64_t j0 = 0; j0 < n; j0 += kNc) {
    const int64_t nb = std::min(kNc, n - j0);
    const int64_t nb_pad = (nb + kNr - 1) / kNr * kNr;
    for (int64_t p0 = 0; p0 < k; p0 += kKc) {
      const int64_t kb = std::min(kKc, k - p0);
      // Pack op(B)[p0 : p0+kb, j0 : j0+nb] row-major (unit stride for both transposes).
      for (int64_t p = 0; p < kb; ++p) {
        T* dst = panel.data() + p * ld_panel;
        if (!trans_b) {
          const T* src = b + (p0 + p) * ldb + j0;
          std::copy(src, src + nb, dst);
        } else {
          for (int64_t j = 0; j < nb; ++j) dst[j] = b[(j0 + j) * ldb + (p0 + p)];
        }
        std::fill(dst + nb, dst + nb_pad, T(0));
      }
      for (int64_t i0 = 0; i0 < m; i0 += kMr) {
        const int64_t mr = std::min(kMr, m - i0);
        for (int64_t jj = 0; jj < nb; jj += kNr) {
          const int64_t nr = std::min(kNr, nb - jj);
          T acc[kMr][kNr] = {};
          for (int64_t p = 0; p < kb; ++p) {
            T av[kMr];
            for (int64_t r = 0; r < kMr; ++r) {
              const int64_t i = i0 + r, q = p0 + p;
              av[r] = r < mr ? (trans_a ? a[q * lda + i] : a[i * lda + q]) : T(0);
            }
            const T* bp = panel.data() + p * ld_panel + jj;
            for (int64_t r = 0; r < kMr; ++r)
              for (int64_t j = 0; j < kNr; ++j) acc[r][j] += av[r] * bp[j];
          }
          for (int64_t r = 0; r < mr; ++r) {
            T* ci = c + (i0 + r) * ldc + j0 + jj;
            for (int64_t j = 0; j < nr; ++j) ci[j] += alpha * acc[r][j];
          }
        }
      }
    }
  }
}

template void reference_gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*,
                                    int64_t, const float*, int64_t, float, float*, int64_t);
template void reference_gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*,
                                     int64_t, const double*, int64_t, double, double*, int64_t);

}  // namespace vae
