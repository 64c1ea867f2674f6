// Error checks for CUDA runtime, cuBLAS and cuRAND calls: each throws CudaError naming the
// file, line, expression and the library's error string.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <curand.h>

#include <string>

#include "core/error.h"

namespace vae {
[[noreturn]] void throw_cuda_error(const char* expr, const char* file, int line, const std::string& what);
const char* cublas_status_name(cublasStatus_t s);
}  // namespace vae

#define CUDA_CHECK(expr)                                                                      \
  do {                                                                                        \
    cudaError_t vae_err_ = (expr);                                                            \
    if (vae_err_ != cudaSuccess)                                                              \
      ::vae::throw_cuda_error(#expr, __FILE__, __LINE__, cudaGetErrorString(vae_err_));       \
  } while (0)

#define CUBLAS_CHECK(expr)                                                                    \
  do {                                                                                        \
    cublasStatus_t vae_st_ = (expr);                                                          \
    if (vae_st_ != CUBLAS_STATUS_SUCCESS)                                                     \
      ::vae::throw_cuda_error(#expr, __FILE__, __LINE__, ::vae::cublas_status_name(vae_st_)); \
  } while (0)

#define CURAND_CHECK(expr)                                                                    \
  do {                                                                                        \
    curandStatus_t vae_st_ = (expr);                                                          \
    if (vae_st_ != CURAND_STATUS_SUCCESS)                                                     \
      ::vae::throw_cuda_error(#expr, __FILE__, __LINE__,                                      \
                              "curand status " + std::to_string(static_cast<int>(vae_st_)));  \
  } while (0)

// After every kernel launch: launch-configuration errors surface here, at the launch site.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
