// How a first-layer kernel reads one stored entry of a CSR batch (backend.h's CsrBatch):
// shared by kernels/ops_sparse.cu and its variants in bench/, so a variant transforms the
// entries exactly as the shipped kernel does.
#pragma once
#include <cstdint>

#include "core/philox.h"
#include "ops.h"

namespace vae::cuda {

// The transformed value of a stored entry (row scaling, then dropout with dropout()'s draw for
// flat index r·cols + c) — cpu_backend.cpp's batch_entries, operation for operation.
__device__ __forceinline__ float sparse_value(const CsrBatchArgs& x, int64_t r, int32_t c, float v) {
  if (x.norms) {
    const double nrm = x.norms[r];
    v = nrm > 0 ? static_cast<float>(static_cast<double>(v) / nrm) : 0.0f;
  }
  if (x.dropout) {
    if (x.drop_all) return __fmul_rn(v, 0.0f);
    const uint64_t i = static_cast<uint64_t>(r) * static_cast<uint64_t>(x.csr.cols) + static_cast<uint64_t>(c);
    const float u = philox_uniform(x.seed, x.stream.get(), i);
    v = __fmul_rn(v, u > x.q ? x.keep_scale : 0.0f);
  }
  return v;
}

__device__ __forceinline__ bool row_ok(const CsrBatchArgs& x, int32_t s) { return s >= 0 && s < x.csr.rows; }

}  // namespace vae::cuda
