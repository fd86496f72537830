// What this build of native/core runs on.
#pragma once
#include <string>

namespace torchd {

struct BuildInfo {
  std::string torchVersion;
  bool cudaCompiled = false;
  bool cudaAvailable = false;
  int deviceCount = 0;
};

BuildInfo buildInfo();

}  // namespace torchd
