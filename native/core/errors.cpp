#include "errors.h"

namespace torchd {

const char* errorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::Load: return "E_LOAD";
    case ErrorCode::Device: return "E_DEVICE";
    case ErrorCode::DType: return "E_DTYPE";
    case ErrorCode::Shape: return "E_SHAPE";
    case ErrorCode::Forward: return "E_FORWARD";
    case ErrorCode::OutOfMemory: return "E_OOM";
    case ErrorCode::Disposed: return "E_DISPOSED";
    case ErrorCode::Argument: return "E_ARGUMENT";
    case ErrorCode::Cancelled: return "E_CANCELLED";
  }
  return "E_FORWARD";
}

}  // namespace torchd
