// Plain structs that carry tensors and output trees across the native/core boundary without exposing
// LibTorch types, so the addon and the harness compile without torch headers in their interface.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace torchd {

enum class DType : uint8_t { Float32, Float16, BFloat16, Float64, Int64, Int32, Int16, Int8, UInt8, Bool };

/** Parses "float32", "float16", ...; returns nullopt for an unknown name. */
std::optional<DType> parseDType(std::string_view name);
const char* dtypeName(DType dtype);
/** Bytes per element. */
size_t dtypeSize(DType dtype);
/** Product of the dims (1 for a scalar); throws EngineError(E_SHAPE) on a negative dim. */
int64_t elementCount(const std::vector<int64_t>& shape);

/** A dense row-major tensor in memory the caller owns and keeps alive for the whole call. */
struct TensorView {
  DType dtype = DType::Float32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t byteLength = 0;
};

/** Host memory owned by `owner` (a LibTorch tensor kept alive while anyone holds the pointer). */
struct OwnedBuffer {
  void* data = nullptr;
  size_t byteLength = 0;
  std::shared_ptr<void> owner;
};

/** What forward returned: tensors, Python scalars, strings, None, lists/tuples and dicts, nested. */
struct OutputNode {
  enum class Kind { Tensor, Float, Int, Bool, String, None, List, Dict };
  Kind kind = Kind::None;
  // Kind::Tensor
  DType dtype = DType::Float32;
  std::vector<int64_t> shape;
  OwnedBuffer buffer;
  // scalars
  double floatValue = 0;
  int64_t intValue = 0;
  bool boolValue = false;
  std::string stringValue;
  // Kind::List (items) and Kind::Dict (keys[i] -> items[i])
  std::vector<OutputNode> items;
  std::vector<std::string> keys;
};

}  // namespace torchd
