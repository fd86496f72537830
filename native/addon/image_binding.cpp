// preprocessImage(bytes: Uint8Array, spec) → Promise<{ data: Float32Array, shape } | { declined: string }>.
// sharp's baton pattern, as for forward: the spec is copied into a plain struct here, the decode and resize
// run on a pool of threads the addon owns (one per core; not libuv's pool, which fs and sharp share, and not
// the model executors), and the Float32Array is built back on the main thread. preprocessImageSync(bytes, spec) does
// the same on the calling thread, for images the caller has bounded to a few µs of work (MNIST-sized PNGs).
#include "image_binding.h"

#include <cstring>
#include <memory>
#include <thread>

#include "convert.h"
#include "executor.h"
#include "image_preprocess.h"

namespace torchd::addon {

namespace {

struct ImageCall {
  Napi::Promise::Deferred deferred;
  Napi::ObjectReference bytesRef;  // keeps the caller's buffer alive while a thread reads it
  const uint8_t* bytes = nullptr;
  size_t length = 0;
  ImageSpec spec;
  PreprocessedImage result;
  std::string error;
  explicit ImageCall(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

/** Images up to this size are copied into a V8-owned buffer (as convert.cpp's small outputs); larger ones are wrapped. */
constexpr size_t kCopiedImageBytes = 16 * 1024;

/** `{ data: Float32Array, shape }` or `{ declined }` for a finished preprocess. */
Napi::Object imageResult(Napi::Env env, PreprocessedImage& result) {
  Napi::Object out = Napi::Object::New(env);
  if (!result.handled) {
    out.Set("declined", result.reason);
    return out;
  }
  size_t count = result.data.size();
  size_t bytes = count * sizeof(float);
  Napi::ArrayBuffer buffer;
  if (bytes <= kCopiedImageBytes) {
    // An MNIST-sized input: an external buffer would cost a finalizer and a weak callback for 3 KB.
    buffer = Napi::ArrayBuffer::New(env, bytes);
    if (bytes > 0) std::memcpy(buffer.Data(), result.data.data(), bytes);
  } else {
    // The ArrayBuffer takes over the vector's memory: no copy of the pixels.
    auto* owned = new std::vector<float>(std::move(result.data));
    buffer = Napi::ArrayBuffer::New(
        env, owned->data(), bytes, [](Napi::Env, void*, std::vector<float>* v) { delete v; }, owned);
  }
  out.Set("data", Napi::Float32Array::New(env, count, buffer, 0));
  Napi::Array shape = Napi::Array::New(env, result.shape.size());
  for (size_t i = 0; i < result.shape.size(); ++i) shape.Set(i, Napi::Number::New(env, static_cast<double>(result.shape[i])));
  out.Set("shape", shape);
  return out;
}

void finishOnMainThread(Napi::Env env, Napi::Function, std::nullptr_t*, ImageCall* raw) {
  std::unique_ptr<ImageCall> call(raw);
  if (env == nullptr) return;
  Napi::HandleScope scope(env);
  if (!call->error.empty()) {
    call->deferred.Reject(makeError(env, ErrorCode::OutOfMemory, call->error, ErrorKind::Error).Value());
    return;
  }
  call->deferred.Resolve(imageResult(env, call->result));
}

using Completion = Napi::TypedThreadSafeFunction<std::nullptr_t, ImageCall, finishOnMainThread>;

/** The image pool of the environment running on this thread (each Node environment has its own thread). */
thread_local Executor* tImagePool = nullptr;

Executor& imagePool(Napi::Env env) {
  if (!tImagePool) {
    int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    tImagePool = new Executor(threads);
    napi_add_env_cleanup_hook(
        env,
        [](void* arg) {
          auto* pool = static_cast<Executor*>(arg);
          pool->shutdown(true);
          delete pool;
          tImagePool = nullptr;
        },
        tImagePool);
  }
  return *tImagePool;
}

std::vector<float> readFloats(const Napi::Value& value, const char* name, size_t atLeast) {
  if (!value.IsArray()) throw EngineError(ErrorCode::Argument, std::string("spec.") + name + " must be an array of numbers", ErrorKind::TypeError);
  Napi::Array array = value.As<Napi::Array>();
  std::vector<float> out;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value v = array.Get(i);
    if (!v.IsNumber()) throw EngineError(ErrorCode::Argument, std::string("spec.") + name + " must be an array of numbers", ErrorKind::TypeError);
    out.push_back(static_cast<float>(v.As<Napi::Number>().DoubleValue()));  // Math.fround, as the JS path
  }
  if (out.size() < atLeast) throw EngineError(ErrorCode::Argument, std::string("spec.") + name + " needs one value per channel", ErrorKind::RangeError);
  return out;
}

int readInt(const Napi::Object& spec, const char* name, int min, int fallback) {
  Napi::Value v = spec.Get(name);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= min) || d != static_cast<double>(static_cast<int64_t>(d)) || d > 2e9) {
    throw EngineError(ErrorCode::Argument, std::string("spec.") + name + " must be an integer >= " + std::to_string(min), ErrorKind::RangeError);
  }
  return static_cast<int>(d);
}

/** preprocessImage's two arguments: the bytes (Uint8Array or Buffer) and the spec. Throws E_ARGUMENT. */
Napi::Uint8Array readImageArgs(const Napi::CallbackInfo& info, ImageSpec& s) {
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw EngineError(ErrorCode::Argument, "bytes must be a Uint8Array (or Buffer)", ErrorKind::TypeError);
  }
  if (!info[1].IsObject()) throw EngineError(ErrorCode::Argument, "spec must be an object", ErrorKind::TypeError);
  Napi::Object spec = info[1].As<Napi::Object>();
  s.channels = readInt(spec, "channels", 1, 3);
  if (s.channels != 1 && s.channels != 3) throw EngineError(ErrorCode::Argument, "spec.channels must be 1 or 3", ErrorKind::RangeError);
  s.imageSize = readInt(spec, "imageSize", 1, 0);
  s.cropSize = readInt(spec, "cropSize", 1, 0);
  s.mean = readFloats(spec.Get("mean"), "mean", s.channels);
  s.std = readFloats(spec.Get("std"), "std", s.channels);
  s.maxSide = readInt(spec, "maxSide", 1, static_cast<int>(s.maxSide));
  s.maxPixels = readInt(spec, "maxPixels", 1, static_cast<int>(s.maxPixels));
  s.preshrink = readInt(spec, "preshrink", 1, s.preshrink);
  Napi::Value fast = spec.Get("fastDecode");
  if (!fast.IsUndefined() && !fast.IsBoolean()) throw EngineError(ErrorCode::Argument, "spec.fastDecode must be a boolean", ErrorKind::TypeError);
  s.fastDecode = fast.IsBoolean() && fast.As<Napi::Boolean>().Value();
  return info[0].As<Napi::Uint8Array>();
}

Napi::Value PreprocessImageJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto call = std::make_unique<ImageCall>(env);
  Napi::Promise promise = call->deferred.Promise();
  try {
    Napi::Uint8Array bytes = readImageArgs(info, call->spec);
    call->bytes = bytes.Data();
    call->length = bytes.ByteLength();
    call->bytesRef = Napi::Persistent(static_cast<Napi::Object>(bytes));
  } catch (const EngineError& e) {
    call->deferred.Reject(makeError(env, e).Value());
    return promise;
  }
  Completion completion = Completion::New(env, "torchd-image", 0, 1);
  ImageCall* raw = call.release();
  imagePool(env).submit([raw, completion](int) mutable {
    try {
      raw->result = preprocessImage(raw->bytes, raw->length, raw->spec);
    } catch (const std::bad_alloc&) {
      raw->error = "out of host memory while preprocessing an image";
    } catch (const std::exception& e) {
      raw->error = e.what();
    }
    completion.NonBlockingCall(raw);
    completion.Release();
  });
  return promise;
}

/**
 * The same preprocessing on the calling thread, for images too small to be worth a thread hop (an MNIST PNG costs
 * a few µs here against tens of µs for the round trip). The caller bounds what it sends (src/handlers/image.ts:
 * a PNG of at most 128 × 128 pixels and 64 KB); the decode itself stops at the header's size whatever follows.
 */
Napi::Value PreprocessImageSyncJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PreprocessedImage result;
  try {
    ImageSpec spec;
    Napi::Uint8Array bytes = readImageArgs(info, spec);
    result = preprocessImage(bytes.Data(), bytes.ByteLength(), spec);
  } catch (const EngineError& e) {
    throw makeError(env, e);
  } catch (const std::bad_alloc&) {
    throw makeError(env, ErrorCode::OutOfMemory, "out of host memory while preprocessing an image", ErrorKind::Error);
  } catch (const std::exception& e) {
    throw makeError(env, ErrorCode::OutOfMemory, e.what(), ErrorKind::Error);
  }
  return imageResult(env, result);
}

}  // namespace

void registerImageFunctions(Napi::Env env, Napi::Object exports) {
  exports.Set("preprocessImage", Napi::Function::New<PreprocessImageJs>(env, "preprocessImage"));
  exports.Set("preprocessImageSync", Napi::Function::New<PreprocessImageSyncJs>(env, "preprocessImageSync"));
}

}  // namespace torchd::addon
