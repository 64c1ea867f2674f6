// Philox4x32-10 against the Random123 known-answer vectors, and the derived uniform/normal draws
// every backend uses for dropout masks and reparameterisation noise.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>

#include "core/philox.h"

namespace vae {
namespace {

// From the kat_vectors file of the Random123 distribution (D. E. Shaw Research), lines
// "philox4x32 10 <ctr0..3> <key0..1> <out0..3>", as also reproduced in DEShawResearch/fs123
// core123/ut/ut_philox.cpp (test_kat_philox4x32).
struct Kat {
  uint32_t ctr[4];
  uint32_t key[2];
  uint32_t out[4];
};
constexpr Kat kKats[] = {
    {{0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u},
     {0x00000000u, 0x00000000u},
     {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
     {0xffffffffu, 0xffffffffu},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
     {0xa4093822u, 0x299f31d0u},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
};

uint64_t join(uint32_t lo, uint32_t hi) { return (static_cast<uint64_t>(hi) << 32) | lo; }

TEST(Philox, Random123KnownAnswers) {
  for (const Kat& k : kKats) {
    const Philox4 c{{k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3]}};
    const Philox4 r = philox4x32_10(c, k.key[0], k.key[1]);
    for (int w = 0; w < 4; ++w) EXPECT_EQ(r.v[w], k.out[w]) << std::hex << "word " << w;
  }
}

// philox_block packs (block, stream) into the counter low word first and the seed into the key.
TEST(Philox, BlockCounterAndKeyLayout) {
  for (const Kat& k : kKats) {
    const uint64_t block = join(k.ctr[0], k.ctr[1]), stream = join(k.ctr[2], k.ctr[3]);
    const uint64_t seed = join(k.key[0], k.key[1]);
    const Philox4 r = philox_block(seed, stream, block);
    for (int w = 0; w < 4; ++w) EXPECT_EQ(r.v[w], k.out[w]) << "word " << w;
    // Element i of a stream is word i % 4 of block i / 4 (reachable only for block < 2^62).
    if (block < (uint64_t{1} << 62)) {
      for (int w = 0; w < 4; ++w) EXPECT_EQ(philox_u32(seed, stream, block * 4 + w), k.out[w]);
    }
  }
  // Uniform of the all-zero block's first word, by hand: ((0x6627e8d5 >> 8) + 1) / 2^24.
  EXPECT_EQ(philox_uniform(0, 0, 0), static_cast<float>((0x6627e8u + 1) / 16777216.0));
}

TEST(Philox, UniformInHalfOpenUnitInterval) {
  double sum = 0, sq = 0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const float u = philox_uniform(42, 7, i);
    ASSERT_GT(u, 0.0f) << i;
    ASSERT_LE(u, 1.0f) << i;
    sum += u;
    sq += static_cast<double>(u) * u;
  }
  const double mean = sum / n, var = sq / n - mean * mean;
  EXPECT_NEAR(mean, 0.5, 0.005);       // σ of the mean ≈ 0.0009
  EXPECT_NEAR(var, 1.0 / 12.0, 0.002);
}

TEST(Philox, NormalMeanAndVariance) {
  double sum = 0, sq = 0, cube = 0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const double z = philox_normal(3, rng_stream(RngStream::eps, 1), i);
    ASSERT_TRUE(std::isfinite(z)) << i;
    sum += z;
    sq += z * z;
    cube += z * z * z;
  }
  const double mean = sum / n, var = sq / n - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.015);  // σ of the mean ≈ 0.0032
  EXPECT_NEAR(var, 1.0, 0.02);    // σ of the variance ≈ 0.0045
  EXPECT_NEAR(cube / n, 0.0, 0.05);
}

TEST(Philox, StreamsSeedsAndIndicesAreIndependent) {
  // Different streams / seeds give different sequences, and draws do not correlate.
  const int n = 20000;
  double cross = 0, a_sum = 0, b_sum = 0;
  int equal = 0;
  for (int i = 0; i < n; ++i) {
    const uint32_t a = philox_u32(1, rng_stream(RngStream::dropout, 0), i);
    const uint32_t b = philox_u32(1, rng_stream(RngStream::dropout, 1), i);
    const uint32_t c = philox_u32(2, rng_stream(RngStream::dropout, 0), i);
    equal += (a == b) + (a == c);
    const double ua = philox_uniform(1, rng_stream(RngStream::dropout, 0), i) - 0.5;
    const double ub = philox_uniform(1, rng_stream(RngStream::eps, 0), i) - 0.5;
    cross += ua * ub;
    a_sum += ua;
    b_sum += ub;
  }
  EXPECT_LE(equal, 1);
  // Correlation of uniforms across streams: σ ≈ 1/√n ≈ 0.007.
  const double corr = (cross / n - (a_sum / n) * (b_sum / n)) * 12.0;
  EXPECT_LT(std::fabs(corr), 0.035);
  // Counter-based: a draw depends only on (seed, stream, index), not on call order.
  const float late = philox_uniform(9, 9, 123456);
  for (int i = 0; i < 100; ++i) (void)philox_uniform(9, 9, i);
  EXPECT_EQ(philox_uniform(9, 9, 123456), late);
  // Neighbouring indices within and across blocks differ.
  EXPECT_NE(philox_normal(9, 9, 0), philox_normal(9, 9, 1));
  EXPECT_NE(philox_normal(9, 9, 1), philox_normal(9, 9, 2));
  EXPECT_NE(rng_stream(RngStream::eps, 5), rng_stream(RngStream::dropout, 5));
}

}  // namespace
}  // namespace vae
