// Our Philox4x32-10 stream (core/philox.h, shared by the CPU and the CUDA kernels) is cuRAND's
// Philox4_32_10 generator: element i of (seed, stream) is the i-th 32-bit draw of a cuRAND state
// initialised with curand_init(seed, subsequence = stream, offset = i). cuRAND's device API is
// device-only, so this cross-check runs on a GPU and skips without one; the known-answer tests of
// test_philox.cpp pin the same generator on the host.
#include <cuda_runtime.h>
#include <curand_kernel.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "core/philox.h"

namespace vae {
namespace {

__global__ void curand_draws(unsigned long long seed, unsigned long long stream, unsigned long long offset, int n,
                             uint32_t* out) {
  curandStatePhilox4_32_10_t s;
  curand_init(seed, stream, offset, &s);
  for (int i = 0; i < n; ++i) out[i] = curand(&s);
}

TEST(CudaPhilox, OurStreamIsCurandsPhilox4x32_10) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  constexpr int kN = 37;  // crosses several 4-word blocks from every starting phase
  uint32_t* dev = nullptr;
  ASSERT_EQ(cudaMalloc(&dev, kN * sizeof(uint32_t)), cudaSuccess);
  int mismatches = 0;
  for (uint64_t seed : {uint64_t{0}, uint64_t{1}, uint64_t{0x0123456789abcdefULL}}) {
    for (uint64_t stream : {uint64_t{0}, uint64_t{7}, uint64_t{1} << 40}) {
      for (uint64_t offset : {uint64_t{0}, uint64_t{3}, uint64_t{4097}, (uint64_t{1} << 33) + 2}) {
        curand_draws<<<1, 1>>>(seed, stream, offset, kN, dev);
        ASSERT_EQ(cudaGetLastError(), cudaSuccess);
        std::vector<uint32_t> got(kN);
        ASSERT_EQ(cudaMemcpy(got.data(), dev, kN * sizeof(uint32_t), cudaMemcpyDeviceToHost), cudaSuccess);
        for (int i = 0; i < kN; ++i) {
          const uint32_t ours = philox_u32(seed, stream, offset + static_cast<uint64_t>(i));
          if (ours != got[static_cast<size_t>(i)] && ++mismatches <= 5)
            ADD_FAILURE() << "seed " << seed << " stream " << stream << " element " << offset + i << ": ours "
                          << ours << ", cuRAND " << got[static_cast<size_t>(i)];
        }
      }
    }
  }
  cudaFree(dev);
  EXPECT_EQ(mismatches, 0);
}

}  // namespace
}  // namespace vae
