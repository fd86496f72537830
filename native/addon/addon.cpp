// torchd.node: N-API surface over native/core. Every costly method returns a Promise. The pattern is
// sharp's baton: arguments are converted to plain structs here on the main thread, the work runs on
// the model's own executor thread touching only those structs and LibTorch, and the JS result is
// built back on the main thread (via a thread-safe function). No N-API call happens off the main thread.
#include <napi.h>

#include <functional>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <set>

#include "build_info.h"
#include "convert.h"
#include "errors.h"
#include "executor.h"
#include "integrated_gradients.h"
#include "model.h"

namespace torchd::addon {

namespace {

class ModelWrap;

struct AddonData {
  Napi::FunctionReference modelConstructor;
  std::unique_ptr<Executor> loader;  // one thread for loads, so a slow load never blocks libuv's pool
  std::set<ModelWrap*> live;
  ~AddonData();
};

/** One call in flight: created on the main thread, executed on an executor thread, finished on the main thread. */
struct Call {
  Napi::Promise::Deferred deferred;
  std::vector<Napi::ObjectReference> keepAlive;  // JS buffers the views point into, and the model object
  std::function<void(int lane)> execute;         // executor thread: plain C++ and LibTorch only
  std::function<Napi::Value(Napi::Env)> finish;  // main thread: builds the JS result
  std::function<void()> settled;                 // main thread: bookkeeping after resolve/reject
  std::optional<EngineError> error;
  explicit Call(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

void completeOnMainThread(Napi::Env env, Napi::Function, std::nullptr_t*, Call* call);
using Completion = Napi::TypedThreadSafeFunction<std::nullptr_t, Call, completeOnMainThread>;

void completeOnMainThread(Napi::Env env, Napi::Function, std::nullptr_t*, Call* raw) {
  std::unique_ptr<Call> call(raw);
  if (env == nullptr) return;  // environment torn down: nothing left to resolve
  Napi::HandleScope scope(env);
  try {
    if (call->error) {
      call->deferred.Reject(makeError(env, *call->error).Value());
    } else {
      call->deferred.Resolve(call->finish(env));
    }
  } catch (const EngineError& e) {
    call->deferred.Reject(makeError(env, e).Value());
  } catch (const Napi::Error& e) {
    call->deferred.Reject(e.Value());
  } catch (const std::exception& e) {
    call->deferred.Reject(makeError(env, ErrorCode::Forward, e.what(), ErrorKind::Error).Value());
  }
  if (call->settled) call->settled();
}

/** Queues `call` on `executor`; the promise settles on the main thread. */
Napi::Promise dispatch(Napi::Env env, Executor& executor, std::unique_ptr<Call> call) {
  Napi::Promise promise = call->deferred.Promise();
  Completion completion = Completion::New(env, "torchd", 0, 1);
  Call* raw = call.release();
  executor.submit([raw, completion](int lane) mutable {
    try {
      raw->execute(lane);
    } catch (const EngineError& e) {
      raw->error = e;
    } catch (const std::bad_alloc&) {
      raw->error = EngineError(ErrorCode::OutOfMemory, "out of host memory");
    } catch (const std::exception& e) {
      raw->error = EngineError(ErrorCode::Forward, e.what());
    } catch (...) {
      raw->error = EngineError(ErrorCode::Forward, "unknown native error");
    }
    completion.NonBlockingCall(raw);
    completion.Release();
  });
  return promise;
}

Napi::Promise rejected(Napi::Env env, const EngineError& e) {
  auto deferred = Napi::Promise::Deferred::New(env);
  deferred.Reject(makeError(env, e).Value());
  return deferred.Promise();
}

int readPositiveInt(const Napi::Value& v, const char* name) {
  if (!v.IsNumber()) throw EngineError(ErrorCode::Argument, std::string(name) + " must be a number", ErrorKind::TypeError);
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 1) || d != static_cast<double>(static_cast<int>(d)) || d > 4096) {
    throw EngineError(ErrorCode::Argument, std::string(name) + " must be an integer in [1, 4096]", ErrorKind::RangeError);
  }
  return static_cast<int>(d);
}

std::vector<TensorView> readInputs(const Napi::Value& value, std::vector<Napi::ObjectReference>& keepAlive) {
  if (!value.IsArray()) throw EngineError(ErrorCode::Argument, "inputs must be an array of tensors", ErrorKind::TypeError);
  Napi::Array array = value.As<Napi::Array>();
  std::vector<TensorView> views;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    views.push_back(readTensor(array.Get(i), "inputs[" + std::to_string(i) + "]", keepAlive));
  }
  return views;
}

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {
                           InstanceMethod<&ModelWrap::Forward>("forward"),
                           InstanceMethod<&ModelWrap::IntegratedGradients>("integratedGradients"),
                           InstanceMethod<&ModelWrap::SetWorkers>("setWorkers"),
                           InstanceMethod<&ModelWrap::Dispose>("dispose"),
                           InstanceAccessor<&ModelWrap::Path>("path"),
                           InstanceAccessor<&ModelWrap::Device>("device"),
                           InstanceAccessor<&ModelWrap::Inputs>("inputs"),
                           InstanceAccessor<&ModelWrap::ParameterCount>("parameterCount"),
                           InstanceAccessor<&ModelWrap::ParameterBytes>("parameterBytes"),
                           InstanceAccessor<&ModelWrap::Workers>("workers"),
                           InstanceAccessor<&ModelWrap::ForwardCalls>("forwardCalls"),
                           InstanceAccessor<&ModelWrap::Optimization>("optimization"),
                       });
  }

  // Constructed only by loadModel's completion with the already-loaded model (no I/O here).
  ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    auto* loaded = info[0].As<Napi::External<std::shared_ptr<Model>>>().Data();
    int workers = info[1].As<Napi::Number>().Int32Value();
    model_ = *loaded;
    path_ = model_->path();
    device_ = model_->device();
    inputNames_ = model_->inputNames();
    executor_ = std::make_unique<Executor>(workers, prepareTorchThread);
    workers_ = workers;
    Env().GetInstanceData<AddonData>()->live.insert(this);
  }

  ~ModelWrap() override {
    release();
    if (auto* data = Env().GetInstanceData<AddonData>()) data->live.erase(this);
  }

  /** Joins the executor threads (idle by now) and frees the module. */
  void release() {
    if (executor_) {
      executor_->shutdown();
      executor_.reset();
    }
    if (model_) {
      lastForwardCalls_ = model_->forwardCalls();
      model_.reset();
    }
  }

 private:
  bool checkUsable(Napi::Env env, std::optional<Napi::Promise>& rejection) {
    if (disposed_) {
      rejection = rejected(env, EngineError(ErrorCode::Disposed, "model '" + path_ + "' was disposed"));
      return false;
    }
    return true;
  }

  std::unique_ptr<Call> newCall(Napi::Env env) {
    auto call = std::make_unique<Call>(env);
    call->keepAlive.push_back(Napi::Persistent(Value()));  // the wrap outlives its calls
    ++inflight_;
    call->settled = [this] { onSettled(); };
    return call;
  }

  void onSettled() {
    if (--inflight_ == 0 && disposed_) {
      release();
      for (auto& waiter : disposeWaiters_) waiter.Resolve(Env().Undefined());
      disposeWaiters_.clear();
    }
  }

  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::optional<Napi::Promise> rejection;
    if (!checkUsable(env, rejection)) return *rejection;
    std::vector<Napi::ObjectReference> keepAlive;
    std::vector<TensorView> views;
    try {
      views = readInputs(info[0], keepAlive);
    } catch (const EngineError& e) {
      return rejected(env, e);
    }
    auto call = newCall(env);
    for (auto& ref : keepAlive) call->keepAlive.push_back(std::move(ref));
    auto result = std::make_shared<OutputNode>();
    call->execute = [model = model_, views = std::move(views), result](int lane) {
      *result = model->forward(views, lane);
    };
    call->finish = [result](Napi::Env env) { return toJs(env, *result); };
    return dispatch(env, *executor_, std::move(call));
  }

  Napi::Value IntegratedGradients(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::optional<Napi::Promise> rejection;
    if (!checkUsable(env, rejection)) return *rejection;
    std::vector<Napi::ObjectReference> keepAlive;
    std::vector<TensorView> views;
    IgOptions options;
    try {
      views = readInputs(info[0], keepAlive);
      if (!info[1].IsObject()) throw EngineError(ErrorCode::Argument, "options must be an object { target, ... }", ErrorKind::TypeError);
      Napi::Object opts = info[1].As<Napi::Object>();
      Napi::Value target = opts.Get("target");
      if (target.IsUndefined()) {
        // No target: the core picks each example's predicted class from the forward it runs anyway.
        if (!views.empty() && !views[0].shape.empty()) options.target.assign(views[0].shape[0], kArgmaxTarget);
      } else {
        if (!target.IsArray()) throw EngineError(ErrorCode::Argument, "options.target must be an array of class indices", ErrorKind::TypeError);
        Napi::Array targets = target.As<Napi::Array>();
        for (uint32_t i = 0; i < targets.Length(); ++i) {
          Napi::Value t = targets.Get(i);
          double d = t.IsNumber() ? t.As<Napi::Number>().DoubleValue() : -1.5;
          if (!t.IsNumber() || d != static_cast<double>(static_cast<int64_t>(d))) {
            throw EngineError(ErrorCode::Argument, "options.target[" + std::to_string(i) + "] must be an integer", ErrorKind::TypeError);
          }
          if (d < 0) {
            throw EngineError(ErrorCode::Argument, "options.target[" + std::to_string(i) + "] must be >= 0", ErrorKind::RangeError);
          }
          options.target.push_back(static_cast<int64_t>(d));
        }
      }
      Napi::Value steps = opts.Get("steps");
      if (!steps.IsUndefined()) {
        if (!steps.IsNumber()) throw EngineError(ErrorCode::Argument, "options.steps must be a number", ErrorKind::TypeError);
        double s = steps.As<Napi::Number>().DoubleValue();
        if (!(s >= 1) || s != static_cast<double>(static_cast<int>(s)) || s > 100000) {
          throw EngineError(ErrorCode::Argument, "options.steps must be an integer in [1, 100000]", ErrorKind::RangeError);
        }
        options.steps = static_cast<int>(s);
      }
      Napi::Value chunk = opts.Get("chunk");
      if (!chunk.IsUndefined()) options.chunk = readPositiveInt(chunk, "options.chunk");
      Napi::Value method = opts.Get("method");
      if (!method.IsUndefined()) {
        std::string m = method.IsString() ? method.As<Napi::String>().Utf8Value() : "";
        if (m == "gausslegendre") {
          options.method = IgMethod::GaussLegendre;
        } else if (m == "riemann_trapezoid") {
          options.method = IgMethod::RiemannTrapezoid;
        } else {
          throw EngineError(ErrorCode::Argument, "options.method must be 'gausslegendre' or 'riemann_trapezoid'", ErrorKind::RangeError);
        }
      }
      Napi::Value baseline = opts.Get("baseline");
      if (!baseline.IsUndefined() && !baseline.IsNull()) options.baseline = readTensor(baseline, "options.baseline", keepAlive);
    } catch (const EngineError& e) {
      return rejected(env, e);
    }
    auto call = newCall(env);
    for (auto& ref : keepAlive) call->keepAlive.push_back(std::move(ref));
    auto result = std::make_shared<IgResult>();
    call->execute = [model = model_, views = std::move(views), options = std::move(options), result](int lane) {
      *result = model->integratedGradients(views, options, lane);
    };
    call->finish = [result](Napi::Env env) -> Napi::Value {
      Napi::Object out = Napi::Object::New(env);
      out.Set("attributions", toJs(env, result->attributions));
      Napi::Array delta = Napi::Array::New(env, result->delta.size());
      for (size_t i = 0; i < result->delta.size(); ++i) delta.Set(i, Napi::Number::New(env, result->delta[i]));
      out.Set("delta", delta);
      return out;
    };
    return dispatch(env, *executor_, std::move(call));
  }

  void SetWorkers(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    try {
      if (disposed_) throw EngineError(ErrorCode::Disposed, "model '" + path_ + "' was disposed");
      int n = readPositiveInt(info[0], "workers");
      executor_->resize(n);
      workers_ = n;
    } catch (const EngineError& e) {
      throw makeError(env, e);
    }
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto deferred = Napi::Promise::Deferred::New(env);
    disposed_ = true;
    if (inflight_ == 0) {
      release();
      deferred.Resolve(env.Undefined());
    } else {
      // Running and queued calls finish first; the last one to settle frees the module.
      disposeWaiters_.push_back(deferred);
    }
    return deferred.Promise();
  }

  Napi::Value Path(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), path_); }
  Napi::Value Device(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), device_); }
  Napi::Value Inputs(const Napi::CallbackInfo& info) {
    Napi::Array array = Napi::Array::New(info.Env(), inputNames_.size());
    for (size_t i = 0; i < inputNames_.size(); ++i) {
      Napi::Object entry = Napi::Object::New(info.Env());
      entry.Set("name", inputNames_[i]);
      array.Set(i, entry);
    }
    return array;
  }
  Napi::Value ParameterCount(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), model_ ? static_cast<double>(model_->parameterCount()) : 0);
  }
  Napi::Value ParameterBytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), model_ ? static_cast<double>(model_->parameterBytes()) : 0);
  }
  Napi::Value Workers(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), workers_); }
  Napi::Value ForwardCalls(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(model_ ? model_->forwardCalls() : lastForwardCalls_));
  }

  /** { serving: 'optimized' | 'original' | 'pending', reason } (reason: why the original serves, else ''). */
  Napi::Value Optimization(const Napi::CallbackInfo& info) {
    if (model_) optimize_ = model_->optimizeState();
    Napi::Object out = Napi::Object::New(info.Env());
    const char* serving = optimize_.serving == ForwardModule::Optimized ? "optimized"
                          : optimize_.serving == ForwardModule::Pending  ? "pending"
                                                                         : "original";
    out.Set("serving", serving);
    out.Set("reason", optimize_.reason);
    return out;
  }

  std::shared_ptr<Model> model_;
  OptimizeState optimize_;  // the last state read, kept for after dispose
  std::unique_ptr<Executor> executor_;
  std::string path_;
  std::string device_;
  std::vector<std::string> inputNames_;
  int workers_ = 1;
  int inflight_ = 0;
  bool disposed_ = false;
  uint64_t lastForwardCalls_ = 0;
  std::vector<Napi::Promise::Deferred> disposeWaiters_;
};

AddonData::~AddonData() {
  // Environment teardown (process exit): stop every executor so no thread outlives the runtime.
  for (ModelWrap* wrap : live) wrap->release();
  live.clear();
  if (loader) loader->shutdown();
}

Napi::Value BuildInfoJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    BuildInfo b = buildInfo();
    Napi::Object out = Napi::Object::New(env);
    out.Set("torchVersion", b.torchVersion);
    out.Set("cudaCompiled", b.cudaCompiled);
    out.Set("cudaAvailable", b.cudaAvailable);
    out.Set("deviceCount", b.deviceCount);
    return out;
  } catch (const std::exception& e) {
    throw makeError(env, ErrorCode::Device, e.what(), ErrorKind::Error);
  }
}

Napi::Value LoadModelJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LoadOptions options;
  std::string path;
  int workers = 1;
  try {
    if (!info[0].IsString()) throw EngineError(ErrorCode::Argument, "path must be a string", ErrorKind::TypeError);
    path = info[0].As<Napi::String>().Utf8Value();
    if (!info[1].IsUndefined() && !info[1].IsNull()) {
      if (!info[1].IsObject()) throw EngineError(ErrorCode::Argument, "options must be an object", ErrorKind::TypeError);
      Napi::Object opts = info[1].As<Napi::Object>();
      Napi::Value device = opts.Get("device");
      if (!device.IsUndefined()) {
        if (!device.IsString()) throw EngineError(ErrorCode::Argument, "options.device must be a string", ErrorKind::TypeError);
        options.device = device.As<Napi::String>().Utf8Value();
      }
      Napi::Value threads = opts.Get("threads");
      if (!threads.IsUndefined()) options.threads = readPositiveInt(threads, "options.threads");
      Napi::Value w = opts.Get("workers");
      if (!w.IsUndefined()) workers = readPositiveInt(w, "options.workers");
      Napi::Value optimize = opts.Get("optimize");
      if (!optimize.IsUndefined()) {
        if (!optimize.IsBoolean()) throw EngineError(ErrorCode::Argument, "options.optimize must be a boolean", ErrorKind::TypeError);
        options.optimize = optimize.As<Napi::Boolean>().Value();
      }
      Napi::Value precision = opts.Get("precision");
      if (!precision.IsUndefined()) {
        if (!precision.IsString()) throw EngineError(ErrorCode::Argument, "options.precision must be a string", ErrorKind::TypeError);
        options.precision = precision.As<Napi::String>().Utf8Value();
        if (options.precision != "fp32" && options.precision != "fp16" && options.precision != "bf16") {
          throw EngineError(ErrorCode::Argument, "options.precision must be fp32, fp16 or bf16", ErrorKind::RangeError);
        }
      }
    }
  } catch (const EngineError& e) {
    return rejected(env, e);
  }
  auto* data = env.GetInstanceData<AddonData>();
  if (!data->loader) data->loader = std::make_unique<Executor>(1, prepareTorchThread);
  auto call = std::make_unique<Call>(env);
  auto loaded = std::make_shared<std::shared_ptr<Model>>();
  call->execute = [path, options, loaded](int) { *loaded = Model::load(path, options); };
  call->finish = [loaded, workers](Napi::Env env) -> Napi::Value {
    auto* data = env.GetInstanceData<AddonData>();
    auto external = Napi::External<std::shared_ptr<Model>>::New(env, loaded.get());
    return data->modelConstructor.New({external, Napi::Number::New(env, workers)});
  };
  return dispatch(env, *data->loader, std::move(call));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // process.exit() skips environment cleanup and goes straight to exit(): stop the executors before
  // LibTorch's static destructors run (registered after LibTorch loaded, so it runs before them).
  static std::once_flag exitHook;
  std::call_once(exitHook, [] { std::atexit([] { Executor::shutdownAllForExit(); }); });
  auto* data = new AddonData();
  data->modelConstructor = Napi::Persistent(ModelWrap::Define(env));
  env.SetInstanceData<AddonData>(data);
  exports.Set("buildInfo", Napi::Function::New<BuildInfoJs>(env, "buildInfo"));
  exports.Set("loadModel", Napi::Function::New<LoadModelJs>(env, "loadModel"));
  return exports;
}

}  // namespace

}  // namespace torchd::addon

static Napi::Object InitTorchd(Napi::Env env, Napi::Object exports) { return torchd::addon::Init(env, exports); }

NODE_API_MODULE(torchd, InitTorchd)
