// What this build of native/core runs on.
#pragma once
#include <string>

namespace torchd {

struct BuildInfo {
  std::string torchVersion;
  bool cudaCompiled = false;
  bool cudaAvailable = false;
  int deviceCount = 0;
  /** OpenBLAS's thread count (its own pool, apart from LibTorch's intra-op threads); -1 when the BLAS is not OpenBLAS. */
  int blasThreads = -1;
};

BuildInfo buildInfo();

/**
 * Gives OpenBLAS one thread unless OPENBLAS_NUM_THREADS chose a count. Its own pool (one thread per
 * core, spin-waiting between calls) competes with the executors and intra-op threads that own the cores.
 * The addon's loader sets the variable before LibTorch is linked; a program linked against LibTorch
 * (the harness) is past that point when main() runs, so it calls this instead. No-op without OpenBLAS.
 */
void limitBlasThreadsUnlessSet();

}  // namespace torchd
