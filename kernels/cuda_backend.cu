// CUDA backend entry point. The kernels land with the [cuda] work; until then a request for the
// CUDA backend fails with a clear message and --device auto stays on the CPU.
#include "backend/backend.h"
#include "cuda_check.h"

namespace vae {

std::unique_ptr<Backend<float>> make_cuda_backend(bool /*tf32*/) {
  if (!cuda_device_available())
    throw VaeError("--device cuda: no CUDA device is available (use --device cpu or auto)");
  throw VaeError("--device cuda: this build has no CUDA backend yet; use --device cpu");
}

bool cuda_backend_built() { return false; }

}  // namespace vae
