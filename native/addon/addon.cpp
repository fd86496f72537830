// torchd.node: N-API surface over native/core. Every costly method returns a Promise. The pattern is
// sharp's baton: arguments are converted to plain structs here on the main thread, the work runs on
// the model instance's own executor thread (native/core's ServingModel, which owns the threads, CUDA
// streams and intra-op count) touching only those structs and LibTorch, and the JS result is built
// back on the main thread (via a thread-safe function). No N-API call happens off the main thread.
#include <napi.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "build_info.h"
#include "cancel.h"
#include "convert.h"
#include "errors.h"
#include "executor.h"
#include "image_binding.h"
#include "integrated_gradients.h"
#include "loop_poll.h"
#include "model.h"
#include "serving_model.h"

namespace torchd::addon {

namespace {

class ModelWrap;

struct AddonData {
  Napi::FunctionReference modelConstructor;
  Napi::FunctionReference cancelTokenConstructor;
  std::unique_ptr<Executor> loader;  // one thread for loads, so a slow load never blocks libuv's pool
  std::set<ModelWrap*> live;
  std::unique_ptr<LoopPoll> loopPoll;
  ~AddonData();
};

/**
 * A JS handle on a native CancelToken: `new CancelToken()`, `.cancel(reason?)`, `.setTimeout(ms)`.
 * Passed as `{ cancel }` to forward/integratedGradients; the executor checks it at safe points.
 */
class CancelTokenWrap : public Napi::ObjectWrap<CancelTokenWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "CancelToken",
                       {InstanceMethod<&CancelTokenWrap::Cancel>("cancel"),
                        InstanceMethod<&CancelTokenWrap::SetTimeout>("setTimeout")});
  }
  explicit CancelTokenWrap(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<CancelTokenWrap>(info), token_(std::make_shared<CancelToken>()) {}
  const std::shared_ptr<CancelToken>& token() const { return token_; }

 private:
  void Cancel(const Napi::CallbackInfo& info) {
    // The reason is kept as a pointer by the token: only fixed strings, chosen here.
    bool deadline = info.Length() > 0 && info[0].IsString() && info[0].As<Napi::String>().Utf8Value() == "deadline";
    token_->cancel(deadline ? "the request's deadline passed" : "the request was cancelled");
  }
  void SetTimeout(const Napi::CallbackInfo& info) {
    if (!info[0].IsNumber()) throw makeError(info.Env(), ErrorCode::Argument, "ms must be a number", ErrorKind::TypeError);
    double ms = std::max(0.0, info[0].As<Napi::Number>().DoubleValue());
    token_->setDeadline(CancelToken::Clock::now() +
                        std::chrono::microseconds(static_cast<int64_t>(std::min(ms, 1e12) * 1000)));
  }
  std::shared_ptr<CancelToken> token_;
};

/** One call in flight: created on the main thread, executed on an executor thread, finished on the main thread. */
struct Call {
  Napi::Promise::Deferred deferred;
  std::shared_ptr<CancelToken> cancel = std::make_shared<CancelToken>();  // the caller's, or the call's own
  std::vector<Napi::ObjectReference> keepAlive;  // JS buffers the views point into, and the model object
  std::function<void()> execute;                 // loader thread: plain C++ and LibTorch only (loads)
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

/**
 * Hands `call` to `submit` (which queues the work and later runs the ServingModel::Done it is given on
 * a native thread); the promise settles on the main thread.
 */
Napi::Promise dispatch(Napi::Env env, std::unique_ptr<Call> call,
                       const std::function<void(ServingModel::Done)>& submit) {
  Napi::Promise promise = call->deferred.Promise();
  Completion completion = Completion::New(env, "torchd", 0, 1);
  Call* raw = call.release();
  submit([raw, completion](std::optional<EngineError> error) mutable {
    raw->error = std::move(error);
    completion.NonBlockingCall(raw);
    completion.Release();
  });
  return promise;
}

/** Queues a load (`call->execute`) on the addon's loader thread, with the errors ServingModel maps. */
Napi::Promise dispatchLoad(Napi::Env env, Executor& loader, std::unique_ptr<Call> call) {
  Call* raw = call.get();
  return dispatch(env, std::move(call), [&loader, raw](ServingModel::Done done) {
    loader.submit([raw, done = std::move(done)](int) {
      std::optional<EngineError> error;
      try {
        raw->execute();
      } catch (const EngineError& e) {
        error = e;
      } catch (const std::bad_alloc&) {
        error = EngineError(ErrorCode::OutOfMemory, "out of host memory");
      } catch (const std::exception& e) {
        error = EngineError(ErrorCode::Load, e.what());
      } catch (...) {
        error = EngineError(ErrorCode::Load, "unknown native error");
      }
      done(std::move(error));
    });
  });
}

Napi::Promise rejected(Napi::Env env, const EngineError& e) {
  auto deferred = Napi::Promise::Deferred::New(env);
  deferred.Reject(makeError(env, e).Value());
  return deferred.Promise();
}

/** An integer argument in [lo, hi]: TypeError unless a number, RangeError "must be an integer in [lo, hi]" otherwise. */
int readIntInRange(const Napi::Value& v, const std::string& name, int lo, int hi) {
  if (!v.IsNumber()) throw EngineError(ErrorCode::Argument, name + " must be a number", ErrorKind::TypeError);
  double d = v.As<Napi::Number>().DoubleValue();
  // The range first, so the integer test never converts a value an int cannot hold.
  if (!(d >= lo) || d > hi || d != std::trunc(d)) {
    throw EngineError(ErrorCode::Argument, name + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]",
                      ErrorKind::RangeError);
  }
  return static_cast<int>(d);
}

int readPositiveInt(const Napi::Value& v, const char* name) { return readIntInRange(v, name, 1, 4096); }

std::vector<TensorView> readInputs(const Napi::Value& value, std::vector<Napi::ObjectReference>& keepAlive) {
  if (!value.IsArray()) throw EngineError(ErrorCode::Argument, "inputs must be an array of tensors", ErrorKind::TypeError);
  Napi::Array array = value.As<Napi::Array>();
  std::vector<TensorView> views;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    views.push_back(readTensor(array.Get(i), "inputs[" + std::to_string(i) + "]", keepAlive));
  }
  return views;
}

/** `options.cancel` (a CancelToken made by this addon) or null when absent. Throws E_ARGUMENT. */
std::shared_ptr<CancelToken> readCancel(const Napi::Value& options, const char* what) {
  if (options.IsUndefined() || options.IsNull()) return nullptr;
  if (!options.IsObject()) throw EngineError(ErrorCode::Argument, std::string(what) + " must be an object", ErrorKind::TypeError);
  Napi::Value cancel = options.As<Napi::Object>().Get("cancel");
  if (cancel.IsUndefined() || cancel.IsNull()) return nullptr;
  auto* data = options.Env().GetInstanceData<AddonData>();
  if (!cancel.IsObject() || !cancel.As<Napi::Object>().InstanceOf(data->cancelTokenConstructor.Value())) {
    throw EngineError(ErrorCode::Argument, std::string(what) + ".cancel must be a CancelToken", ErrorKind::TypeError);
  }
  return CancelTokenWrap::Unwrap(cancel.As<Napi::Object>())->token();
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
                           InstanceAccessor<&ModelWrap::Threads>("threads"),
                           InstanceAccessor<&ModelWrap::ExecutorThreads>("executorThreads"),
                           InstanceAccessor<&ModelWrap::SpinPickups>("spinPickups"),
                           InstanceMethod<&ModelWrap::ProbeThreads>("probeThreads"),
                       });
  }

  // Constructed only by loadModel's completion with the already-loaded model (no I/O here).
  ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    auto* loaded = info[0].As<Napi::External<std::shared_ptr<ServingModel>>>().Data();
    serving_ = *loaded;
    const Model& model = serving_->model();
    path_ = model.path();
    device_ = model.device();
    inputNames_ = model.inputNames();
    workers_ = serving_->workers();
    threads_ = serving_->threads();
    spinMicros_ = serving_->spinMicros();
    Env().GetInstanceData<AddonData>()->live.insert(this);
  }

  ~ModelWrap() override {
    release();
    if (auto* data = Env().GetInstanceData<AddonData>()) data->live.erase(this);
  }

  /** Asks every running call of this model to stop at its next safe point. */
  void cancelAll() {
    for (const auto& token : tokens_) token->cancel("the process is exiting");
  }

  /** The model instance, while it still runs (for the exit hook). */
  ServingModel* serving() { return serving_.get(); }

  /** Joins the executor threads (idle by now) and frees the module. */
  void release() {
    if (serving_) {
      serving_->shutdown();
      lastForwardCalls_ = serving_->model().forwardCalls();
      optimize_ = serving_->model().optimizeState();
      serving_.reset();
    }
  }

 private:
  using Clock = std::chrono::steady_clock;

  /**
   * After a short call the next one of its kind is likely short too: the event loop polls through its
   * completion and, for the rest of the window, the client's next request (a poll that ended at the completion
   * did worse, bench/NOTES.md §44). `last`: the previous call's submit-to-completion time on the main thread.
   */
  void pollIfShort(Napi::Env env, Clock::duration last) {
    if (spinMicros_ > 0 && last < std::chrono::microseconds(spinMicros_)) env.GetInstanceData<AddonData>()->loopPoll->pollFor(spinMicros_);
  }

  bool checkUsable(Napi::Env env, std::optional<Napi::Promise>& rejection) {
    if (disposed_) {
      rejection = rejected(env, EngineError(ErrorCode::Disposed, "model '" + path_ + "' was disposed"));
      return false;
    }
    return true;
  }

  std::unique_ptr<Call> newCall(Napi::Env env, const std::shared_ptr<CancelToken>& token) {
    auto call = std::make_unique<Call>(env);
    call->keepAlive.push_back(Napi::Persistent(Value()));  // the wrap outlives its calls
    if (token) call->cancel = token;
    ++inflight_;
    tokens_.insert(call->cancel);
    call->settled = [this, token = call->cancel] { onSettled(token); };
    return call;
  }

  void onSettled(const std::shared_ptr<CancelToken>& token) {
    tokens_.erase(token);
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
    std::shared_ptr<CancelToken> token;
    try {
      token = readCancel(info[1], "options");
    } catch (const EngineError& e) {
      return rejected(env, e);
    }
    auto call = newCall(env, token);
    for (auto& ref : keepAlive) call->keepAlive.push_back(std::move(ref));
    auto result = std::make_shared<OutputNode>();
    auto started = Clock::now();
    call->finish = [this, result, started](Napi::Env env) {
      lastForward_ = Clock::now() - started;
      return toJs(env, *result);
    };
    std::shared_ptr<CancelToken> cancel = call->cancel;  // read before `call` moves into dispatch
    pollIfShort(env, lastForward_);
    return dispatch(env, std::move(call),
                    [this, views = std::move(views), result, cancel](ServingModel::Done done) mutable {
                      serving_->submitForward(std::move(views), cancel, result, std::move(done));
                    });
  }

  Napi::Value IntegratedGradients(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::optional<Napi::Promise> rejection;
    if (!checkUsable(env, rejection)) return *rejection;
    std::vector<Napi::ObjectReference> keepAlive;
    std::vector<TensorView> views;
    IgOptions options;
    std::shared_ptr<CancelToken> token;
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
      if (!steps.IsUndefined()) options.steps = readIntInRange(steps, "options.steps", 1, 100000);
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
      Napi::Value budget = opts.Get("memoryBudget");
      if (!budget.IsUndefined()) {
        double b = budget.IsNumber() ? budget.As<Napi::Number>().DoubleValue() : -1;
        if (!(b >= 0) || b != static_cast<double>(static_cast<int64_t>(b)) || b > 9.0e15) {
          throw EngineError(ErrorCode::Argument, "options.memoryBudget must be a byte count >= 0", ErrorKind::RangeError);
        }
        options.memoryBudget = static_cast<int64_t>(b);
      }
      Napi::Value baseline = opts.Get("baseline");
      if (!baseline.IsUndefined() && !baseline.IsNull()) options.baseline = readTensor(baseline, "options.baseline", keepAlive);
      token = readCancel(opts, "options");
    } catch (const EngineError& e) {
      return rejected(env, e);
    }
    auto call = newCall(env, token);
    for (auto& ref : keepAlive) call->keepAlive.push_back(std::move(ref));
    auto result = std::make_shared<IgResult>();
    auto started = Clock::now();
    call->finish = [this, result, started](Napi::Env env) -> Napi::Value {
      lastIntegratedGradients_ = Clock::now() - started;
      Napi::Object out = Napi::Object::New(env);
      out.Set("attributions", toJs(env, result->attributions));
      Napi::Array delta = Napi::Array::New(env, result->delta.size());
      for (size_t i = 0; i < result->delta.size(); ++i) delta.Set(i, Napi::Number::New(env, result->delta[i]));
      out.Set("delta", delta);
      out.Set("chunk", Napi::Number::New(env, result->chunk));
      out.Set("passes", Napi::Number::New(env, result->passes));
      out.Set("stepBytes", Napi::Number::New(env, static_cast<double>(result->stepBytes)));
      return out;
    };
    std::shared_ptr<CancelToken> cancel = call->cancel;  // read before `call` moves into dispatch
    pollIfShort(env, lastIntegratedGradients_);
    return dispatch(env, std::move(call),
                    [this, views = std::move(views), options = std::move(options), result,
                     cancel](ServingModel::Done done) mutable {
                      serving_->submitIntegratedGradients(std::move(views), std::move(options), cancel, result,
                                                          std::move(done));
                    });
  }

  void SetWorkers(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    try {
      if (disposed_) throw EngineError(ErrorCode::Disposed, "model '" + path_ + "' was disposed");
      int n = readPositiveInt(info[0], "workers");
      serving_->setWorkers(n);
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
    return Napi::Number::New(info.Env(), serving_ ? static_cast<double>(serving_->model().parameterCount()) : 0);
  }
  Napi::Value ParameterBytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), serving_ ? static_cast<double>(serving_->model().parameterBytes()) : 0);
  }
  Napi::Value Workers(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), workers_); }
  Napi::Value ForwardCalls(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(serving_ ? serving_->model().forwardCalls() : lastForwardCalls_));
  }
  Napi::Value Threads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), threads_); }
  Napi::Value ExecutorThreads(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), serving_ ? serving_->executorThreads() : 0);
  }
  Napi::Value SpinPickups(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), serving_ ? static_cast<double>(serving_->spinPickups()) : 0);
  }

  // Test hook: the intra-op thread count LibTorch reports on an executor thread of this model,
  // after the model applied its own count there (as every forward does).
  Napi::Value ProbeThreads(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::optional<Napi::Promise> rejection;
    if (!checkUsable(env, rejection)) return *rejection;
    auto call = newCall(env, nullptr);
    auto seen = std::make_shared<int>(0);
    call->finish = [seen](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *seen); };
    return dispatch(env, std::move(call), [this, seen](ServingModel::Done done) {
      serving_->submitProbeThreads(seen, std::move(done));
    });
  }

  /** { serving: 'optimized' | 'original' | 'pending', reason } (reason: why the original serves, else ''). */
  Napi::Value Optimization(const Napi::CallbackInfo& info) {
    if (serving_) optimize_ = serving_->model().optimizeState();
    Napi::Object out = Napi::Object::New(info.Env());
    const char* serving = optimize_.serving == ForwardModule::Optimized ? "optimized"
                          : optimize_.serving == ForwardModule::Pending  ? "pending"
                                                                         : "original";
    out.Set("serving", serving);
    out.Set("reason", optimize_.reason);
    return out;
  }

  std::shared_ptr<ServingModel> serving_;  // module, executor threads, streams; null once released
  OptimizeState optimize_;  // the last state read, kept for after dispose
  std::string path_;
  std::string device_;
  std::vector<std::string> inputNames_;
  int workers_ = 1;
  int inflight_ = 0;
  bool disposed_ = false;
  uint64_t lastForwardCalls_ = 0;
  std::vector<Napi::Promise::Deferred> disposeWaiters_;
  std::set<std::shared_ptr<CancelToken>> tokens_;  // of the calls in flight (main thread only)
  int threads_ = 0;
  int spinMicros_ = 0;
  // The last call of each kind, submit to completion; none yet: no poll.
  Clock::duration lastForward_ = Clock::duration::max();
  Clock::duration lastIntegratedGradients_ = Clock::duration::max();
};

AddonData::~AddonData() {
  // Environment teardown (end of the event loop, a worker thread ending): running calls stop at their
  // next safe point, queued ones are dropped, and every executor thread is joined while LibTorch is
  // still whole.
  for (ModelWrap* wrap : live) wrap->cancelAll();
  for (ModelWrap* wrap : live) {
    if (ServingModel* m = wrap->serving()) m->shutdown(/*dropQueued=*/true);
    wrap->release();
  }
  live.clear();
  if (loader) loader->shutdown(/*dropQueued=*/true);
}

/**
 * Why exit crashed (found with gdb): an executor thread was inside computeIntegratedGradients →
 * mkldnn_convolution → libdnnl while the main thread sat in the addon's atexit handler, joining it.
 * exit() runs atexit handlers and the destructors of function-local statics in reverse order of
 * registration, and LibTorch/oneDNN register many of theirs lazily, on first use — after the
 * addon's Init registered its handler — so they were destroyed first, under the running thread
 * (SIGSEGV; sometimes heap corruption, "malloc_consolidate(): unaligned fastbin chunk detected").
 * Registering a handler later does not fix it either (tried, and gdb showed why): a thread still
 * running registers new statics during exit() — oneDNN creating a kernel it had not needed yet —
 * and those are destroyed before any handler registered earlier. A napi env cleanup hook does not
 * run on process.exit() at all.
 *
 * So no LibTorch work may be running once exit() starts. src/native.ts calls prepareForExit from
 * process 'exit', which Node emits for process.exit(), an uncaught exception and the end of the
 * event loop, before it calls exit(). There we
 *   1. mark the process exiting and cancel this env's calls: integrated gradients stops at its next
 *      chunk boundary, a forward not yet started is skipped; queued calls are dropped;
 *   2. wait up to kExitGrace for the running calls to return, then join the parked threads while
 *      the libraries are whole (their thread-local destructors need them) and let exit() proceed;
 *   3. if a call is still inside one LibTorch operator after that (nothing can interrupt it),
 *      return false: native.ts then ends the process with exitNow(code) (_exit, the intended code),
 *      because running exit()'s destructors under that thread is what crashed.
 */
constexpr std::chrono::milliseconds kExitGrace{1000};

/** prepareForExit(code, isMainThread) → true when every executor thread of this env was stopped. */
Napi::Value PrepareForExitJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool isMainThread = info[1].IsBoolean() ? info[1].As<Napi::Boolean>().Value() : true;
  auto* data = env.GetInstanceData<AddonData>();
  // The exiting flag is process-wide: only the main thread's exit may set it.
  if (isMainThread) markProcessExiting();
  std::vector<ServingModel*> models;
  for (ModelWrap* wrap : data->live) {
    wrap->cancelAll();
    if (ServingModel* m = wrap->serving()) models.push_back(m);
  }
  const auto until = std::chrono::steady_clock::now() + kExitGrace;
  auto left = [&] {
    return std::max(std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()),
                    std::chrono::milliseconds(0));
  };
  bool idle = true;
  for (ServingModel* m : models) idle = m->quiesce(left()) && idle;
  if (data->loader) idle = data->loader->quiesce(left()) && idle;
  if (idle) {
    for (ServingModel* m : models) m->shutdown(/*dropQueued=*/true);
    if (data->loader) data->loader->shutdown(/*dropQueued=*/true);
  }
  return Napi::Boolean::New(env, idle);
}

/** loopPollTurns() → event-loop turns taken while polling after short calls (a test hook). */
Napi::Value LoopPollTurnsJs(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(info.Env().GetInstanceData<AddonData>()->loopPoll->turns()));
}

/** exitNow(code): C stdio flushed, then _exit(code) — no atexit handler, no static destructor. */
void ExitNowJs(const Napi::CallbackInfo& info) {
  int code = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1;
  std::fflush(nullptr);
  _exit(code);
}

/**
 * Backstop for an exit() that bypasses process 'exit' (a native library calling exit()): it runs
 * after the statics LibTorch registered lazily are gone, so it only stops the executors, leaves
 * idle threads parked, and _exit()s if a call is still inside LibTorch.
 */
void registerBackstopExitHook() {
#ifdef __GLIBC__
  on_exit([](int status, void*) { Executor::shutdownAllForExit(status, kExitGrace, /*join=*/false); }, nullptr);
#else
  std::atexit([] { Executor::shutdownAllForExit(EXIT_FAILURE, kExitGrace, /*join=*/false); });
#endif
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
    out.Set("blasThreads", b.blasThreads);
    out.Set("loopPoll", LoopPoll::available());
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
  int spinMicros = 0;
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
      Napi::Value spin = opts.Get("spinMicros");
      if (!spin.IsUndefined()) spinMicros = readIntInRange(spin, "options.spinMicros", 0, 1000000);
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
  auto loaded = std::make_shared<std::shared_ptr<ServingModel>>();
  call->execute = [path, options, workers, spinMicros, loaded] {
    *loaded = std::make_shared<ServingModel>(Model::load(path, options), workers, spinMicros);
  };
  call->finish = [loaded](Napi::Env env) -> Napi::Value {
    auto* data = env.GetInstanceData<AddonData>();
    auto external = Napi::External<std::shared_ptr<ServingModel>>::New(env, loaded.get());
    return data->modelConstructor.New({external});
  };
  return dispatchLoad(env, *data->loader, std::move(call));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // The exit hook proper is prepareForExit (above), called from JS before exit().
  static std::once_flag exitHook;
  std::call_once(exitHook, registerBackstopExitHook);
  auto* data = new AddonData();
  data->modelConstructor = Napi::Persistent(ModelWrap::Define(env));
  Napi::Function cancelToken = CancelTokenWrap::Define(env);
  data->cancelTokenConstructor = Napi::Persistent(cancelToken);
  exports.Set("CancelToken", cancelToken);
  exports.Set("prepareForExit", Napi::Function::New<PrepareForExitJs>(env, "prepareForExit"));
  exports.Set("exitNow", Napi::Function::New<ExitNowJs>(env, "exitNow"));
  exports.Set("loopPollTurns", Napi::Function::New<LoopPollTurnsJs>(env, "loopPollTurns"));
  data->loopPoll = std::make_unique<LoopPoll>(env);
  env.SetInstanceData<AddonData>(data);
  exports.Set("buildInfo", Napi::Function::New<BuildInfoJs>(env, "buildInfo"));
  exports.Set("loadModel", Napi::Function::New<LoadModelJs>(env, "loadModel"));
  registerImageFunctions(env, exports);
  return exports;
}

}  // namespace

}  // namespace torchd::addon

static Napi::Object InitTorchd(Napi::Env env, Napi::Object exports) { return torchd::addon::Init(env, exports); }

NODE_API_MODULE(torchd, InitTorchd)
