#include "tensor_io.h"

#include "errors.h"
#include "tensor_io_torch.h"

namespace torchd {

namespace {
struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
  at::ScalarType scalar;
};
const DTypeEntry kDTypes[] = {
    {DType::Float32, "float32", 4, at::kFloat}, {DType::Float16, "float16", 2, at::kHalf},
    {DType::BFloat16, "bfloat16", 2, at::kBFloat16}, {DType::Float64, "float64", 8, at::kDouble},
    {DType::Int64, "int64", 8, at::kLong}, {DType::Int32, "int32", 4, at::kInt},
    {DType::Int16, "int16", 2, at::kShort}, {DType::Int8, "int8", 1, at::kChar},
    {DType::UInt8, "uint8", 1, at::kByte}, {DType::Bool, "bool", 1, at::kBool},
};
const DTypeEntry& entry(DType dtype) { return kDTypes[static_cast<size_t>(dtype)]; }
}  // namespace

std::optional<DType> parseDType(std::string_view name) {
  for (const auto& e : kDTypes) {
    if (name == e.name) return e.dtype;
  }
  return std::nullopt;
}

const char* dtypeName(DType dtype) { return entry(dtype).name; }
size_t dtypeSize(DType dtype) { return entry(dtype).size; }

int64_t elementCount(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw EngineError(ErrorCode::Shape, "shape has a negative dimension", ErrorKind::RangeError);
    n *= d;
  }
  return n;
}

at::ScalarType toScalarType(DType dtype) { return entry(dtype).scalar; }

DType fromScalarType(at::ScalarType type) {
  for (const auto& e : kDTypes) {
    if (e.scalar == type) return e.dtype;
  }
  throw EngineError(ErrorCode::DType, std::string("model returned a tensor of unsupported dtype ") +
                                          c10::toString(type));
}

at::Tensor wrapView(const TensorView& view) {
  // from_blob never frees the memory; the addon keeps the JS buffer referenced until the call ends.
  return torch::from_blob(const_cast<void*>(view.data), view.shape,
                          torch::TensorOptions().dtype(toScalarType(view.dtype)));
}

OutputNode tensorNode(const at::Tensor& input, const OutputOptions& options) {
  at::Tensor t = input.device().is_cpu() ? input : input.to(at::kCPU);
  if (options.widenFloats && (t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16)) t = t.to(at::kFloat);
  if (!t.is_contiguous()) t = t.contiguous();
  bool borrowed = false;
  if (options.borrowed) {
    for (const auto& b : *options.borrowed) borrowed = borrowed || t.is_alias_of(b);
  }
  // Memory that aliases an input (JS owns it), a parameter or another output must not become a JS
  // buffer: JS would write into it or outlive it. Those results get their own copy. (t and the
  // caller's reference make two uses of a tensor nobody else holds.)
  if (borrowed || t.use_count() > 2 || t.storage().use_count() > 1 || t.storage_offset() != 0 ||
      static_cast<size_t>(t.numel()) * t.element_size() != t.storage().nbytes()) {
    t = t.clone(at::MemoryFormat::Contiguous);
  }
  OutputNode node;
  node.kind = OutputNode::Kind::Tensor;
  node.dtype = fromScalarType(t.scalar_type());
  node.shape.assign(t.sizes().begin(), t.sizes().end());
  node.buffer.data = t.data_ptr();
  node.buffer.byteLength = static_cast<size_t>(t.numel()) * t.element_size();
  node.buffer.owner = std::make_shared<at::Tensor>(std::move(t));
  return node;
}

OutputNode toOutputNode(const c10::IValue& value, const OutputOptions& options) {
  OutputNode node;
  if (value.isTensor()) return tensorNode(value.toTensor(), options);
  if (value.isNone()) return node;
  if (value.isDouble()) {
    node.kind = OutputNode::Kind::Float;
    node.floatValue = value.toDouble();
  } else if (value.isInt()) {
    node.kind = OutputNode::Kind::Int;
    node.intValue = value.toInt();
  } else if (value.isBool()) {
    node.kind = OutputNode::Kind::Bool;
    node.boolValue = value.toBool();
  } else if (value.isString()) {
    node.kind = OutputNode::Kind::String;
    node.stringValue = value.toStringRef();
  } else if (value.isTuple()) {
    node.kind = OutputNode::Kind::List;
    for (const auto& item : value.toTupleRef().elements()) node.items.push_back(toOutputNode(item, options));
  } else if (value.isList()) {
    node.kind = OutputNode::Kind::List;
    for (const auto& item : value.toListRef()) node.items.push_back(toOutputNode(item, options));
  } else if (value.isGenericDict()) {
    node.kind = OutputNode::Kind::Dict;
    for (const auto& kv : value.toGenericDict()) {
      const auto& key = kv.key();
      if (key.isString()) {
        node.keys.push_back(key.toStringRef());
      } else if (key.isInt()) {
        node.keys.push_back(std::to_string(key.toInt()));
      } else {
        throw EngineError(ErrorCode::Forward, "model returned a dict with keys that are not str or int");
      }
      node.items.push_back(toOutputNode(kv.value(), options));
    }
  } else {
    throw EngineError(ErrorCode::Forward,
                      "model returned a value torchd cannot convert: " + value.tagKind());
  }
  return node;
}

}  // namespace torchd
