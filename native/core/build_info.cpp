#include "build_info.h"

#include <torch/cuda.h>
#include <torch/version.h>

#include <dlfcn.h>

#include <cstdlib>

namespace torchd {

BuildInfo buildInfo() {
  BuildInfo info;
  info.torchVersion = TORCH_VERSION;
#ifdef TORCHD_WITH_CUDA
  info.cudaCompiled = true;
#endif
  info.cudaAvailable = torch::cuda::is_available();
  info.deviceCount = info.cudaAvailable ? static_cast<int>(torch::cuda::device_count()) : 0;
  // Looked up, not linked: Debian's LibTorch reaches OpenBLAS through libblas.so.3 (an alternatives link),
  // PyTorch's own LibTorch carries MKL instead, and the count only matters where OpenBLAS is the one loaded.
  using GetThreads = int (*)();
  if (auto get = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"))) info.blasThreads = get();
  return info;
}

void limitBlasThreadsUnlessSet() {
  if (std::getenv("OPENBLAS_NUM_THREADS") != nullptr) return;
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(1);
}

}  // namespace torchd
