// Errors of the native engine. Every failure crossing out of native/core is an EngineError with a
// stable code; the addon turns it into a JS Error of the chosen kind with `.code` set.
#pragma once
#include <stdexcept>
#include <string>

namespace torchd {

enum class ErrorCode { Load, Device, DType, Shape, Forward, OutOfMemory, Disposed, Argument, Cancelled };

/** Which JS constructor the addon uses: bad arguments are TypeError/RangeError, the rest Error. */
enum class ErrorKind { Error, TypeError, RangeError };

/** "E_LOAD", "E_DEVICE", ... as seen from JavaScript. */
const char* errorCodeName(ErrorCode code);

class EngineError : public std::runtime_error {
 public:
  EngineError(ErrorCode code, const std::string& message, ErrorKind kind = ErrorKind::Error)
      : std::runtime_error(message), code_(code), kind_(kind) {}
  ErrorCode code() const { return code_; }
  ErrorKind kind() const { return kind_; }

 private:
  ErrorCode code_;
  ErrorKind kind_;
};

}  // namespace torchd
