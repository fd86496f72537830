#include "model.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <fstream>
#include <mutex>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <sstream>

#include "memory_probe.h"
#include "model_impl.h"
#include "optimize.h"
#include "tensor_io_torch.h"

#ifdef TORCHD_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace torchd {

namespace {

thread_local int tAppliedThreads = -1;

/**
 * Gives the calling thread `wanted` intra-op threads (0 = keep LibTorch's default). With the OpenMP
 * backend the count lives per calling thread, so a model applies its own count on the executor
 * thread that runs its call; each executor belongs to one model, so this changes at most once.
 */
void applyIntraOpThreads(int wanted) {
  if (tAppliedThreads == -1) {
    // LibTorch initialises a thread's count lazily, on its first parallel region or get_num_threads(),
    // from the process-wide value the LAST set_num_threads() stored (any model's). Trigger that now,
    // so it cannot later overwrite this model's count on this thread.
    (void)at::get_num_threads();
    tAppliedThreads = 0;
  }
  if (wanted > 0 && wanted != tAppliedThreads) {
    at::set_num_threads(wanted);
    tAppliedThreads = wanted;
  }
}

bool contains(const std::string& text, const char* needle) { return text.find(needle) != std::string::npos; }

/**
 * The TorchScript interpreter prepends two tracebacks to an error; its last line is the error itself,
 * e.g. "RuntimeError: mat1 and mat2 shapes cannot be multiplied" or "builtins.ValueError: ...".
 */
std::string scriptErrorSummary(std::string what) {
  while (!what.empty() && (what.back() == '\n' || what.back() == ' ')) what.pop_back();
  if (!contains(what, "The following operation failed in the TorchScript interpreter")) return what;
  size_t pos = what.rfind('\n');
  return pos == std::string::npos ? what : what.substr(pos + 1);
}

struct DeviceSpec {
  c10::Device device = c10::Device(c10::kCPU);
  std::string name = "cpu";
};

DeviceSpec parseDevice(const std::string& text) {
  DeviceSpec spec;
  if (text.empty() || text == "cpu") return spec;
  int index = 0;
  if (text == "cuda") {
    index = 0;
  } else if (text.rfind("cuda:", 0) == 0 && text.size() > 5 &&
             text.find_first_not_of("0123456789", 5) == std::string::npos && text.size() < 9) {
    index = std::stoi(text.substr(5));
  } else {
    throw EngineError(ErrorCode::Device, "unknown device '" + text + "' (expected cpu, cuda or cuda:N)",
                      ErrorKind::RangeError);
  }
  if (!torch::cuda::is_available()) {
#ifdef TORCHD_WITH_CUDA
    throw EngineError(ErrorCode::Device, "device '" + text + "' requested but no CUDA device is available");
#else
    throw EngineError(ErrorCode::Device,
                      "device '" + text + "' requested but this LibTorch was built without CUDA");
#endif
  }
  int count = static_cast<int>(torch::cuda::device_count());
  if (index >= count) {
    throw EngineError(ErrorCode::Device,
                      "device '" + text + "' requested but only " + std::to_string(count) + " CUDA device(s) exist");
  }
  spec.device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
  spec.name = "cuda:" + std::to_string(index);
  return spec;
}

}  // namespace

int intraOpThreads() { return at::get_num_threads(); }

void prepareTorchThread() { at::init_num_threads(); }

/**
 * Anything thrown inside forward is the model failing on this input: E_FORWARD, which the server
 * answers 503 "Prediction failed: <message>" as TorchServe does. Input problems a client can fix
 * (count, element count, dtype/shape against what the model declares or its handler implies) are
 * refused before forward runs (checkInputs here; the handlers for declared signatures), never by
 * reading LibTorch's wording, which changes between versions and between the saved and the optimised
 * module. The one exception is running out of memory: the TorchScript interpreter rethrows a CUDA
 * OOM as a plain error, and LibTorch 1.13's CPU allocator has no error type of its own, so their
 * messages are the only way to tell (E_OOM → 507).
 */
[[noreturn]] void rethrowAsEngineError(const char* rawWhat) {
  std::string what = scriptErrorSummary(rawWhat);
  // An explicit `raise` / torch._assert in the model is the model's own verdict on the input.
  if (what.rfind("builtins.", 0) == 0) {
    throw EngineError(ErrorCode::Forward, "model raised: " + what);
  }
  if (contains(what, "CUDA out of memory") || contains(what, "DefaultCPUAllocator: can't allocate memory")) {
    throw EngineError(ErrorCode::OutOfMemory, what);
  }
  throw EngineError(ErrorCode::Forward, what);
}

// Turns the exception being handled into an EngineError with its code; call it from a catch block.
[[noreturn]] void rethrowCurrentAsEngineError() {
  try {
    throw;
  } catch (const EngineError&) {
    throw;
  } catch (const c10::OutOfMemoryError& e) {
    throw EngineError(ErrorCode::OutOfMemory, e.what_without_backtrace());
  } catch (const c10::Error& e) {
    rethrowAsEngineError(e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    throw EngineError(ErrorCode::OutOfMemory, "out of host memory");
  } catch (const std::exception& e) {
    rethrowAsEngineError(e.what());
  }
}

struct Model::Impl {
  std::string path;
  DeviceSpec device;
  int threads = 0;  // intra-op threads for this model's calls; 0 = LibTorch's default
  at::ScalarType computeFloat = at::kFloat;
  bool castFloats = false;  // precision != fp32 on CUDA
  /**
   * The module as saved. Integrated gradients need it (autograd); forward uses it only when it serves.
   * Dropped once the optimised copy serves, and loaded again on the first explanation, so a model that
   * is never explained holds one copy of its weights. Guarded by originalMutex.
   */
  std::shared_ptr<torch::jit::Module> original;
  std::mutex originalMutex;
  /** The frozen, inference-optimised copy (optimize.h); set while Pending or Optimized. */
  std::optional<torch::jit::Module> optimized;
  /** Written only under verifyMutex; Pending until the first forward compares both modules. */
  std::atomic<ForwardModule> serving{ForwardModule::Original};
  std::mutex verifyMutex;
  /** Written before `serving` leaves Pending (or at load), read after it has: no lock needed. */
  std::string optimizeReason;
  std::vector<std::string> inputNames;
  size_t requiredInputs = 0;
  int64_t parameterCount = 0;
  int64_t parameterBytes = 0;
  std::atomic<uint64_t> forwardCalls{0};

  void checkInputs(const std::vector<TensorView>& inputs) const {
    if (inputs.size() < requiredInputs || inputs.size() > inputNames.size()) {
      std::ostringstream msg;
      msg << "forward takes " << (requiredInputs == inputNames.size() ? "" : "at least ") << requiredInputs
          << " input(s) (";
      for (size_t i = 0; i < inputNames.size(); ++i) msg << (i ? ", " : "") << inputNames[i];
      msg << "), got " << inputs.size();
      throw EngineError(ErrorCode::Argument, msg.str(), ErrorKind::RangeError);
    }
    for (size_t i = 0; i < inputs.size(); ++i) {
      const auto& v = inputs[i];
      int64_t n = elementCount(v.shape);
      if (static_cast<size_t>(n) * dtypeSize(v.dtype) != v.byteLength) {
        std::ostringstream msg;
        msg << "input " << i << " (" << inputNames[i] << "): " << v.byteLength / dtypeSize(v.dtype)
            << " elements do not fill shape [";
        for (size_t d = 0; d < v.shape.size(); ++d) msg << (d ? "," : "") << v.shape[d];
        msg << "] (" << n << " elements)";
        throw EngineError(ErrorCode::Shape, msg.str(), ErrorKind::RangeError);
      }
    }
  }

  /** Host views → tensors on the model's device (pinned staging + async copy on CUDA). */
  at::Tensor toDevice(const TensorView& view) {
    at::Tensor host = wrapView(view);
    if (device.device.is_cpu()) return host;
    at::Tensor pinned = at::empty(host.sizes(), host.options().pinned_memory(true));
    pinned.copy_(host);
    at::Tensor onDevice = pinned.to(device.device, /*non_blocking=*/true);
    if (castFloats && onDevice.is_floating_point()) onDevice = onDevice.to(computeFloat);
    return onDevice;
  }

  /** Loads the module from `path` onto the device, in eval mode, parameters without gradients. */
  torch::jit::Module loadModule() const {
    torch::jit::Module m = torch::jit::load(path, device.device);
    m.eval();
    // Only inputs ever need gradients (integrated gradients); this keeps IG's graph small and makes
    // concurrent backward passes never touch shared parameter .grad fields.
    for (auto p : m.parameters()) p.requires_grad_(false);
    if (castFloats) m.to(computeFloat);
    return m;
  }

  /** The original module for integrated gradients, loaded again from `path` if it was dropped. */
  std::shared_ptr<torch::jit::Module> originalModule() {
    std::lock_guard<std::mutex> lock(originalMutex);
    if (!original) {
      try {
        original = std::make_shared<torch::jit::Module>(loadModule());
      } catch (const c10::Error& e) {
        throw EngineError(ErrorCode::Load, "cannot load the original module of '" + path +
                                               "' for integrated gradients: " + e.what_without_backtrace());
      }
    }
    return original;
  }

  /** Forward on the serving module; the first call decides between the optimised copy and the original. */
  c10::IValue runForward(std::vector<c10::IValue> args) {
    ForwardModule now = serving.load(std::memory_order_acquire);
    if (now == ForwardModule::Optimized) return optimized->forward(std::move(args));
    if (now == ForwardModule::Original) return originalModule()->forward(std::move(args));
    std::unique_lock<std::mutex> lock(verifyMutex);
    if (serving.load(std::memory_order_acquire) != ForwardModule::Pending) {
      lock.unlock();
      return runForward(std::move(args));
    }
    // A failing original (a bad first input) is that request's error; the decision waits for a good one.
    c10::IValue reference = originalModule()->forward(args);
    std::string problem;
    c10::IValue candidate;
    try {
      candidate = optimized->forward(std::move(args));
      problem = compareOutputs(candidate, reference, kOptimizeTolerance);
    } catch (const c10::Error& e) {
      problem = std::string("the optimised module failed: ") + e.what_without_backtrace();
    } catch (const std::exception& e) {
      problem = std::string("the optimised module failed: ") + e.what();
    }
    if (problem.empty()) {
      serving.store(ForwardModule::Optimized, std::memory_order_release);
      {
        std::lock_guard<std::mutex> dropping(originalMutex);
        original.reset();
      }
#if defined(__GLIBC__)
      // The original's weights were allocated from the heap (glibc raised its mmap threshold when the file
      // buffer of the load was freed), so freeing them would not shrink RSS by itself.
      malloc_trim(0);
#endif
      return candidate;
    }
    optimizeReason = "outputs differ from the original's on the first input (" + problem + ")";
    optimized.reset();
    serving.store(ForwardModule::Original, std::memory_order_release);
    return reference;
  }

  /** Relative tolerance of the optimised module's outputs against the original's. */
  static constexpr double kOptimizeTolerance = 1e-3;
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::shared_ptr<Model> Model::load(const std::string& path, const LoadOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->device = parseDevice(options.device);
  if (options.threads < 0) throw EngineError(ErrorCode::Argument, "threads must be >= 1", ErrorKind::RangeError);
  impl->threads = options.threads;
  // Before the first tensor is allocated through it (see memory_probe.h; idempotent).
  installAllocationCounter();
  if (options.precision == "fp16" || options.precision == "bf16") {
    if (impl->device.device.is_cuda()) {
      impl->castFloats = true;
      impl->computeFloat = options.precision == "fp16" ? at::kHalf : at::kBFloat16;
    }
  } else if (options.precision != "fp32" && !options.precision.empty()) {
    throw EngineError(ErrorCode::Argument, "precision must be fp32, fp16 or bf16", ErrorKind::RangeError);
  }
  {
    std::ifstream probe(path, std::ios::binary);
    if (!probe) throw EngineError(ErrorCode::Load, "cannot open model file '" + path + "'");
  }
  try {
    prepareTorchThread();
    applyIntraOpThreads(impl->threads);
    impl->original = std::make_shared<torch::jit::Module>(impl->loadModule());
    torch::jit::Module& module = *impl->original;
    for (const auto& p : module.parameters()) {
      impl->parameterCount += p.numel();
      impl->parameterBytes += p.numel() * static_cast<int64_t>(p.element_size());
    }
    auto method = module.find_method("forward");
    if (!method) throw EngineError(ErrorCode::Load, "TorchScript module '" + path + "' has no forward method");
    const auto& args = method->function().getSchema().arguments();
    for (size_t i = 1; i < args.size(); ++i) {  // argument 0 is self
      impl->inputNames.push_back(args[i].name());
      if (!args[i].default_value()) impl->requiredInputs = impl->inputNames.size();
    }
    if (!options.optimize) {
      impl->optimizeReason = "optimize is off";
    } else {
      try {
        impl->optimized = optimizedForInference(module, impl->device.device.is_cpu());
        impl->serving.store(ForwardModule::Pending);
      } catch (const c10::Error& e) {
        impl->optimizeReason = std::string("freezing/optimising failed: ") + e.what_without_backtrace();
      } catch (const std::exception& e) {
        impl->optimizeReason = std::string("freezing/optimising failed: ") + e.what();
      }
    }
  } catch (const EngineError&) {
    throw;
  } catch (const c10::Error& e) {
    throw EngineError(ErrorCode::Load,
                      "cannot load TorchScript model '" + path + "': " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw EngineError(ErrorCode::Load, "cannot load TorchScript model '" + path + "': " + e.what());
  }
  return std::shared_ptr<Model>(new Model(std::move(impl)));
}

OutputNode Model::forward(const std::vector<TensorView>& inputs, const CancelToken* cancel) {
  impl_->checkInputs(inputs);
  // The only safe point of a forward is before it starts: LibTorch cannot stop inside an operator.
  if (cancel) cancel->throwIfStopped();
  impl_->forwardCalls.fetch_add(1);
  applyIntraOpThreads(impl_->threads);
  try {
    c10::InferenceMode inference;
    std::vector<c10::IValue> args;
    args.reserve(inputs.size());
    std::vector<at::Tensor> borrowed;
    for (const auto& v : inputs) {
      at::Tensor t = impl_->toDevice(v);
      if (t.is_cpu()) borrowed.push_back(t);
      args.emplace_back(std::move(t));
    }
    c10::IValue out = impl_->runForward(std::move(args));
    // Work runs on the caller's current stream (ServingModel's CUDAStreamGuard for its lane); low-precision results widen to fp32 for handlers.
    OutputOptions outputOptions;
    outputOptions.widenFloats = impl_->castFloats;
    outputOptions.borrowed = &borrowed;
    return toOutputNode(out, outputOptions);
  } catch (...) {
    rethrowCurrentAsEngineError();
  }
}

IgResult Model::integratedGradients(const std::vector<TensorView>& inputs, const IgOptions& options,
                                    const CancelToken* cancel) {
  if (inputs.empty()) throw EngineError(ErrorCode::Argument, "integrated gradients needs at least one input", ErrorKind::RangeError);
  impl_->checkInputs(inputs);
  if (options.steps < 1) throw EngineError(ErrorCode::Argument, "steps must be >= 1", ErrorKind::RangeError);
  if (options.chunk < 0) throw EngineError(ErrorCode::Argument, "chunk must be >= 1", ErrorKind::RangeError);
  if (options.memoryBudget < 0) throw EngineError(ErrorCode::Argument, "memoryBudget must be >= 0", ErrorKind::RangeError);
  if (cancel) cancel->throwIfStopped();
  const auto& x = inputs[0];
  if (x.dtype != DType::Float32 && x.dtype != DType::Float64 && x.dtype != DType::Float16 &&
      x.dtype != DType::BFloat16) {
    throw EngineError(ErrorCode::DType,
                      std::string("integrated gradients needs a floating-point input, got ") + dtypeName(x.dtype),
                      ErrorKind::TypeError);
  }
  if (x.shape.empty()) throw EngineError(ErrorCode::Shape, "integrated gradients needs a batch dimension", ErrorKind::RangeError);
  int64_t n = x.shape[0];
  if (static_cast<int64_t>(options.target.size()) != n) {
    throw EngineError(ErrorCode::Argument,
                      "target has " + std::to_string(options.target.size()) + " entries for a batch of " +
                          std::to_string(n),
                      ErrorKind::RangeError);
  }
  Quadrature rule = options.method == IgMethod::GaussLegendre ? gaussLegendre(options.steps, cancel)
                                                               : riemannTrapezoid(options.steps);
  applyIntraOpThreads(impl_->threads);
  try {
    // Gradients are the point here: make sure no InferenceMode/no-grad leaks in from the caller.
    c10::InferenceMode notInference(false);
    torch::AutoGradMode grad(true);
    std::vector<at::Tensor> tensors;
    for (const auto& v : inputs) tensors.push_back(impl_->toDevice(v));
    at::Tensor baseline;
    if (options.baseline) {
      const auto& b = *options.baseline;
      if (b.dtype != x.dtype) {
        throw EngineError(ErrorCode::DType, "baseline dtype must equal the input's", ErrorKind::TypeError);
      }
      std::vector<int64_t> inner(x.shape.begin() + 1, x.shape.end());
      if (elementCount(b.shape) * dtypeSize(b.dtype) != b.byteLength) {
        throw EngineError(ErrorCode::Shape, "baseline data does not fill its shape", ErrorKind::RangeError);
      }
      if (b.shape != x.shape && b.shape != inner) {
        throw EngineError(ErrorCode::Shape, "baseline shape must equal the input's (with or without the batch dim)",
                          ErrorKind::RangeError);
      }
      baseline = impl_->toDevice(b).expand(tensors[0].sizes()).contiguous();
    } else {
      baseline = at::zeros_like(tensors[0]);
    }
    // Autograd needs the module as saved (the optimised copy's oneDNN ops have no backward).
    std::shared_ptr<torch::jit::Module> original = impl_->originalModule();
    ForwardFn forward = [original](std::vector<c10::IValue> args) { return original->forward(std::move(args)); };
    IgControl control;
    control.chunk = options.chunk;
    control.memoryBudget = options.memoryBudget;
    control.cancel = cancel;
    if (impl_->device.device.is_cuda()) control.cudaDevice = impl_->device.device.index();
    return computeIntegratedGradients(forward, tensors, baseline, options.target, rule, control);
  } catch (...) {
    rethrowCurrentAsEngineError();
  }
}

const std::string& Model::path() const { return impl_->path; }
int Model::prepareCallingThread() {
  applyIntraOpThreads(impl_->threads);
  return at::get_num_threads();
}
int Model::threads() const { return impl_->threads > 0 ? impl_->threads : at::get_num_threads(); }
const std::string& Model::device() const { return impl_->device.name; }
int Model::cudaDevice() const { return impl_->device.device.is_cuda() ? impl_->device.device.index() : -1; }
const std::vector<std::string>& Model::inputNames() const { return impl_->inputNames; }
size_t Model::requiredInputs() const { return impl_->requiredInputs; }
int64_t Model::parameterCount() const { return impl_->parameterCount; }
int64_t Model::parameterBytes() const { return impl_->parameterBytes; }
uint64_t Model::forwardCalls() const { return impl_->forwardCalls.load(); }
OptimizeState Model::optimizeState() const {
  ForwardModule serving = impl_->serving.load(std::memory_order_acquire);
  return {serving, serving == ForwardModule::Original ? impl_->optimizeReason : std::string()};
}

}  // namespace torchd
