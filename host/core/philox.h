// Counter-based Philox4x32-10 (Salmon et al., SC'11), usable from host and device code.
// Both backends draw every random number (ε, dropout masks, shuffles) from this one function
// of (seed, stream, element index), so a CPU and a GPU run with the same seed see the same noise.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/hd_math.h"

namespace vae {

struct Philox4 {
  uint32_t v[4];
};

VAE_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// Philox4x32 with 10 rounds on counter c and key k.
VAE_HD Philox4 philox4x32_10(Philox4 c, uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(0xD2511F53u, c.v[0], hi0, lo0);
    philox_mulhilo(0xCD9E8D57u, c.v[2], hi1, lo1);
    c = Philox4{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c;
}

// Four 32-bit draws for block `block` of stream `stream` under `seed`.
VAE_HD Philox4 philox_block(uint64_t seed, uint64_t stream, uint64_t block) {
  Philox4 c{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
             static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)}};
  return philox4x32_10(c, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// The i-th 32-bit draw of (seed, stream): element i uses word i%4 of block i/4.
VAE_HD uint32_t philox_u32(uint64_t seed, uint64_t stream, uint64_t i) {
  const Philox4 b = philox_block(seed, stream, i >> 2);
  return b.v[i & 3];
}

// Uniform in (0, 1]: never 0, so log() in Box-Muller is finite. 24 bits so float holds it exactly.
VAE_HD float philox_word_uniform(uint32_t w) {
  return (static_cast<float>(w >> 8) + 1.0f) * (1.0f / 16777216.0f);
}

VAE_HD float philox_uniform(uint64_t seed, uint64_t stream, uint64_t i) {
  return philox_word_uniform(philox_u32(seed, stream, i));
}

// Standard normal for element i: Box-Muller on draws 2i and 2i+1 (both in one Philox block
// when i is even/odd within it), computed in double so CPU and GPU agree after rounding to
// float. Only nearly always: CUDA's double log and cos may differ from glibc's by an ulp or two
// of double, which changes the float only when the value sits that close to a float rounding
// boundary (about 1 draw in 10^8).
VAE_HD float philox_normal(uint64_t seed, uint64_t stream, uint64_t i) {
  const Philox4 b = philox_block(seed, stream, i >> 1);
  const int w = static_cast<int>(i & 1) * 2;
  const double u1 = (static_cast<double>(b.v[w] >> 8) + 1.0) * (1.0 / 16777216.0);
  const double u2 = (static_cast<double>(b.v[w + 1] >> 8)) * (1.0 / 16777216.0);
  return static_cast<float>(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

// Named streams keep the draws of different purposes independent.
enum class RngStream : uint64_t {
  init = 1,       // parameter initialisation (per tensor: init + 1000 * tensor index)
  shuffle = 2,    // per-epoch batch order
  eps = 3,        // VAE reparameterisation noise
  dropout = 4,    // input corruption masks
  split = 5,      // data splits
  synthetic = 6,  // synthetic data generator
  kmeans = 7,
  tsne = 8,
  silhouette = 9,  // the users a silhouette score is taken over
};

// Stream id for (purpose, step) so each training step has fresh, reproducible noise.
VAE_HD uint64_t rng_stream(RngStream s, uint64_t step) {
  return (static_cast<uint64_t>(s) << 48) ^ step;
}

}  // namespace vae
