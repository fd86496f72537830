#include "build_info.h"

#include <torch/cuda.h>
#include <torch/version.h>

namespace torchd {

BuildInfo buildInfo() {
  BuildInfo info;
  info.torchVersion = TORCH_VERSION;
#ifdef TORCHD_WITH_CUDA
  info.cudaCompiled = true;
#endif
  info.cudaAvailable = torch::cuda::is_available();
  info.deviceCount = info.cudaAvailable ? static_cast<int>(torch::cuda::device_count()) : 0;
  return info;
}

}  // namespace torchd
