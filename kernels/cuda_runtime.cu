// Device discovery and error reporting for the CUDA backend.
#include <cstdio>
#include <string>

#include "cuda_check.h"

namespace vae {

void throw_cuda_error(const char* expr, const char* file, int line, const std::string& what) {
  throw CudaError(std::string(file) + ":" + std::to_string(line) + ": " + expr + " failed: " + what);
}

const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}

bool cuda_device_available() {
  int n = 0;
  // No driver or no device both mean "no GPU": the CPU path takes over.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return n > 0;
}

// "" without a usable device; never throws (callers print it in banners and summaries).
std::string cuda_device_name() {
  if (!cuda_device_available()) return "";
  int dev = 0;
  cudaDeviceProp p{};
  if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&p, dev) != cudaSuccess) {
    cudaGetLastError();
    return "";
  }
  return std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ")";
}

// How many FP32 operations the device does per FP64 one (2 on H100/H200, 32 or 64 on consumer
// parts); 0 without a device or when the driver does not say. Never throws.
int cuda_fp32_per_fp64() {
  if (!cuda_device_available()) return 0;
  int dev = 0, ratio = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&ratio, cudaDevAttrSingleToDoublePrecisionPerfRatio, dev) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return ratio;
}

}  // namespace vae
