#include "convert.h"

#include <cmath>
#include <cstring>

namespace torchd::addon {

Napi::Error makeError(Napi::Env env, ErrorCode code, const std::string& message, ErrorKind kind) {
  Napi::Error error = kind == ErrorKind::TypeError    ? Napi::TypeError::New(env, message)
                      : kind == ErrorKind::RangeError ? Napi::RangeError::New(env, message)
                                                      : Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, errorCodeName(code)));
  return error;
}

Napi::Error makeError(Napi::Env env, const EngineError& error) {
  return makeError(env, error.code(), error.what(), error.kind());
}

namespace {

napi_typedarray_type arrayTypeFor(DType dtype) {
  switch (dtype) {
    case DType::Float32: return napi_float32_array;
    case DType::Float16:
    case DType::BFloat16: return napi_uint16_array;  // raw 16-bit words
    case DType::Float64: return napi_float64_array;
    case DType::Int64: return napi_bigint64_array;
    case DType::Int32: return napi_int32_array;
    case DType::Int16: return napi_int16_array;
    case DType::Int8: return napi_int8_array;
    case DType::UInt8:
    case DType::Bool: return napi_uint8_array;
  }
  return napi_uint8_array;
}

const char* arrayTypeName(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_biguint64_array: return "BigUint64Array";
    default: return "TypedArray";
  }
}

[[noreturn]] void bad(ErrorCode code, const std::string& message, ErrorKind kind) {
  throw EngineError(code, message, kind);
}

}  // namespace

TensorView readTensor(const Napi::Value& value, const std::string& what,
                      std::vector<Napi::ObjectReference>& keepAlive) {
  if (!value.IsObject() || value.IsArray()) {
    bad(ErrorCode::Argument, what + " must be an object { data, shape, dtype }", ErrorKind::TypeError);
  }
  Napi::Object obj = value.As<Napi::Object>();
  Napi::Value dtypeValue = obj.Get("dtype");
  if (!dtypeValue.IsString()) bad(ErrorCode::DType, what + ".dtype must be a string", ErrorKind::TypeError);
  std::string dtypeText = dtypeValue.As<Napi::String>().Utf8Value();
  auto dtype = parseDType(dtypeText);
  if (!dtype) bad(ErrorCode::DType, what + ".dtype '" + dtypeText + "' is not a torchd dtype", ErrorKind::TypeError);

  Napi::Value shapeValue = obj.Get("shape");
  if (!shapeValue.IsArray()) bad(ErrorCode::Argument, what + ".shape must be an array of integers", ErrorKind::TypeError);
  Napi::Array shapeArray = shapeValue.As<Napi::Array>();
  TensorView view;
  view.dtype = *dtype;
  for (uint32_t i = 0; i < shapeArray.Length(); ++i) {
    Napi::Value d = shapeArray.Get(i);
    double dim = d.IsNumber() ? d.As<Napi::Number>().DoubleValue() : -1;
    if (!d.IsNumber() || dim < 0 || std::floor(dim) != dim || dim > 9007199254740991.0) {
      bad(ErrorCode::Shape, what + ".shape[" + std::to_string(i) + "] must be a non-negative integer",
          ErrorKind::RangeError);
    }
    view.shape.push_back(static_cast<int64_t>(dim));
  }

  Napi::Value dataValue = obj.Get("data");
  if (!dataValue.IsTypedArray()) bad(ErrorCode::Argument, what + ".data must be a typed array", ErrorKind::TypeError);
  Napi::TypedArray array = dataValue.As<Napi::TypedArray>();
  napi_typedarray_type expected = arrayTypeFor(*dtype);
  if (array.TypedArrayType() != expected) {
    bad(ErrorCode::DType,
        what + ": dtype " + dtypeText + " travels as " + arrayTypeName(expected) + ", got " +
            arrayTypeName(array.TypedArrayType()),
        ErrorKind::TypeError);
  }
  int64_t count = elementCount(view.shape);
  if (static_cast<int64_t>(array.ElementLength()) != count) {
    std::string shapeText;
    for (size_t i = 0; i < view.shape.size(); ++i) shapeText += (i ? "," : "") + std::to_string(view.shape[i]);
    bad(ErrorCode::Shape,
        what + ": " + std::to_string(array.ElementLength()) + " elements do not match shape [" + shapeText + "] (" +
            std::to_string(count) + " elements)",
        ErrorKind::RangeError);
  }
  view.byteLength = array.ByteLength();
  view.data = static_cast<const uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
  keepAlive.push_back(Napi::Persistent(array.As<Napi::Object>()));
  return view;
}

namespace {

/** Outputs up to this size are copied into V8-owned memory instead of wrapped (see tensorToJs). */
constexpr size_t kCopiedOutputBytes = 16 * 1024;

Napi::Value tensorToJs(Napi::Env env, OutputNode& node) {
  Napi::ArrayBuffer buffer;
  size_t bytes = node.buffer.byteLength;
  if (bytes == 0 || node.buffer.data == nullptr) {
    buffer = Napi::ArrayBuffer::New(env, 0);
  } else if (bytes <= kCopiedOutputBytes) {
    // Small outputs (class scores, a few values) are copied into a V8-owned buffer: an external buffer costs an
    // N-API finalizer and V8's external-memory bookkeeping per tensor, and a weak callback at the next GC, which
    // for a 4 KB output is far more than the copy (bench/NOTES.md §36). The tensor is released when `node` is.
    buffer = Napi::ArrayBuffer::New(env, bytes);
    std::memcpy(buffer.Data(), node.buffer.data, bytes);
  } else {
    // The ArrayBuffer owns a reference to the LibTorch tensor; GC of the buffer frees the tensor.
    auto* owner = new std::shared_ptr<void>(std::move(node.buffer.owner));
    buffer = Napi::ArrayBuffer::New(
        env, node.buffer.data, bytes, [](Napi::Env, void*, std::shared_ptr<void>* hint) { delete hint; }, owner);
  }
  size_t length = bytes / dtypeSize(node.dtype);
  Napi::TypedArray data;
  switch (node.dtype) {
    case DType::Float32: data = Napi::Float32Array::New(env, length, buffer, 0); break;
    case DType::Float16:
    case DType::BFloat16: data = Napi::Uint16Array::New(env, length, buffer, 0); break;
    case DType::Float64: data = Napi::Float64Array::New(env, length, buffer, 0); break;
    case DType::Int64: data = Napi::BigInt64Array::New(env, length, buffer, 0); break;
    case DType::Int32: data = Napi::Int32Array::New(env, length, buffer, 0); break;
    case DType::Int16: data = Napi::Int16Array::New(env, length, buffer, 0); break;
    case DType::Int8: data = Napi::Int8Array::New(env, length, buffer, 0); break;
    case DType::UInt8:
    case DType::Bool: data = Napi::Uint8Array::New(env, length, buffer, 0); break;
  }
  Napi::Array shape = Napi::Array::New(env, node.shape.size());
  for (size_t i = 0; i < node.shape.size(); ++i) shape.Set(i, Napi::Number::New(env, static_cast<double>(node.shape[i])));
  Napi::Object tensor = Napi::Object::New(env);
  tensor.Set("data", data);
  tensor.Set("shape", shape);
  tensor.Set("dtype", Napi::String::New(env, dtypeName(node.dtype)));
  return tensor;
}

}  // namespace

Napi::Value toJs(Napi::Env env, OutputNode& node) {
  switch (node.kind) {
    case OutputNode::Kind::Tensor: return tensorToJs(env, node);
    case OutputNode::Kind::Float: return Napi::Number::New(env, node.floatValue);
    case OutputNode::Kind::Int: return Napi::Number::New(env, static_cast<double>(node.intValue));
    case OutputNode::Kind::Bool: return Napi::Boolean::New(env, node.boolValue);
    case OutputNode::Kind::String: return Napi::String::New(env, node.stringValue);
    case OutputNode::Kind::None: return env.Null();
    case OutputNode::Kind::List: {
      Napi::Array array = Napi::Array::New(env, node.items.size());
      for (size_t i = 0; i < node.items.size(); ++i) array.Set(i, toJs(env, node.items[i]));
      return array;
    }
    case OutputNode::Kind::Dict: {
      Napi::Object object = Napi::Object::New(env);
      for (size_t i = 0; i < node.items.size(); ++i) object.Set(node.keys[i], toJs(env, node.items[i]));
      return object;
    }
  }
  return env.Null();
}

}  // namespace torchd::addon
