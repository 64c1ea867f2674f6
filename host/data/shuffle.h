// Deterministic shuffles and sequential draws over Philox, so data splits, synthetic data and
// epoch batch orders are identical on every platform and standard library.
#pragma once
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/philox.h"

namespace vae {

// Sequential 32-bit draws of (seed, stream): draw k equals philox_u32(seed, stream, k), but each
// Philox block is computed once for its four words.
class PhiloxSeq {
 public:
  PhiloxSeq(uint64_t seed, uint64_t stream, uint64_t first = 0)
      : seed_(seed), stream_(stream), next_(first) {}

  uint32_t u32() {
    if (next_ % 4 == 0 || !have_) {
      block_ = philox_block(seed_, stream_, next_ / 4);
      have_ = true;
    }
    return block_.v[next_++ % 4];
  }
  // Uniform integer in [0, bound), bound ≥ 1, exactly unbiased (Lemire's multiply-shift with
  // rejection); the number of words consumed depends only on the drawn values.
  uint32_t below(uint32_t bound) {
    uint64_t m = static_cast<uint64_t>(u32()) * bound;
    uint32_t low = static_cast<uint32_t>(m);
    if (low < bound) {
      const uint32_t threshold = static_cast<uint32_t>(-bound) % bound;
      while (low < threshold) {
        m = static_cast<uint64_t>(u32()) * bound;
        low = static_cast<uint32_t>(m);
      }
    }
    return static_cast<uint32_t>(m >> 32);
  }
  // Uniform in (0, 1] with 53 bits (two words).
  double uniform() {
    const uint64_t hi = u32() >> 5, lo = u32() >> 6;  // 27 + 26 bits
    return (static_cast<double>((hi << 26) | lo) + 1.0) * (1.0 / 9007199254740992.0);
  }
  uint64_t position() const { return next_; }

 private:
  uint64_t seed_, stream_, next_;
  Philox4 block_{};
  bool have_ = false;
};

// Fisher–Yates in place; the k-th swap partner comes from the k-th bounded draw of
// (seed, stream), so the permutation depends only on (size, seed, stream).
inline void philox_shuffle(std::vector<int32_t>& v, uint64_t seed, uint64_t stream) {
  PhiloxSeq rng(seed, stream);
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = rng.below(static_cast<uint32_t>(i));
    std::swap(v[i - 1], v[j]);
  }
}

// A uniform random subset of m of the indices 0..n-1 (all of them when m ≤ 0 or m ≥ n), sorted:
// a partial Fisher–Yates whose draws depend only on (n, m, seed, stream).
inline std::vector<int32_t> philox_subset(int64_t n, int64_t m, uint64_t seed, uint64_t stream) {
  std::vector<int32_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[i] = static_cast<int32_t>(i);
  if (m <= 0 || n <= m) return idx;
  PhiloxSeq rng(seed, stream);
  for (int64_t i = 0; i < m; ++i) {
    const int64_t j = i + rng.below(static_cast<uint32_t>(n - i));
    std::swap(idx[i], idx[j]);
  }
  idx.resize(static_cast<size_t>(m));
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace vae
