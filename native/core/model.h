// A TorchScript module loaded once onto one device. forward() and integratedGradients() are safe
// to call from several threads at once: they share the one module (weights are never copied).
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cancel.h"
#include "tensor_io.h"

namespace torchd {

struct LoadOptions {
  /** "cpu", "cuda" or "cuda:N". */
  std::string device = "cpu";
  /**
   * LibTorch intra-op threads for this model's calls (0 = LibTorch's default). Applied on the thread
   * that runs each call (OpenMP keeps the count per calling thread), so models keep their own counts.
   */
  int threads = 0;
  /** CUDA only: "fp32", "fp16" or "bf16" (weights and float inputs cast; float outputs come back fp32). */
  std::string precision = "fp32";
  /**
   * Forward runs a frozen, inference-optimised copy (optimize.h) once its output on the first forward
   * call (the registry's warm-up) matches the original's; integrated gradients always use the original.
   */
  bool optimize = true;
};

/** Which module forward runs. */
enum class ForwardModule { Pending, Optimized, Original };

struct OptimizeState {
  ForwardModule serving = ForwardModule::Original;
  /** Why the original serves (optimize off, a pass failed, outputs differ); empty otherwise. */
  std::string reason;
};

enum class IgMethod { GaussLegendre, RiemannTrapezoid };

struct IgOptions {
  /** Target index per example into forward's output flattened to [N, K]. */
  std::vector<int64_t> target;
  int steps = 15;
  IgMethod method = IgMethod::GaussLegendre;
  /** Same shape as inputs[0], or inputs[0]'s shape without the batch dim; zeros when absent. */
  std::optional<TensorView> baseline;
  /** Most integration steps per forward/backward pass (each step holds N scaled copies); 0 = no cap. */
  int chunk = 0;
  /**
   * Extra bytes one explanation may hold (0 = unbounded): passes are sized so that their measured
   * peak stays under it, whatever `steps` is (see computeIntegratedGradients).
   */
  int64_t memoryBudget = 0;
};

struct IgResult {
  /** Attributions for inputs[0], its shape, float dtype of the input. */
  OutputNode attributions;
  /** Per example: sum(attributions) - (F(x)_t - F(baseline)_t). */
  std::vector<double> delta;
  /** Steps in the largest pass, number of passes, and the measured bytes of one step (0 = not measured). */
  int chunk = 0;
  int passes = 0;
  int64_t stepBytes = 0;
};

/** The intra-op thread count in effect on the calling thread. */
int intraOpThreads();
/** Run first on every thread that will call into LibTorch (initialises LibTorch's thread state). */
void prepareTorchThread();

class Model {
 public:
  /** Loads and warms the module. Throws EngineError E_LOAD, E_DEVICE or E_ARGUMENT. */
  static std::shared_ptr<Model> load(const std::string& path, const LoadOptions& options);
  ~Model();

  /**
   * Runs forward under InferenceMode, on the calling thread's current CUDA stream (ServingModel gives
   * each executor lane its own); a stopped `cancel` token (may be null) skips the call. Throws EngineError E_ARGUMENT, E_DTYPE,
   * E_SHAPE, E_FORWARD, E_OOM or E_CANCELLED.
   */
  OutputNode forward(const std::vector<TensorView>& inputs, const CancelToken* cancel = nullptr);
  /** Integrated gradients w.r.t. inputs[0], cancellable between passes; same errors as forward. */
  IgResult integratedGradients(const std::vector<TensorView>& inputs, const IgOptions& options,
                               const CancelToken* cancel = nullptr);
  /** The intra-op thread count this model's calls run with (its LoadOptions.threads or LibTorch's default). */
  int threads() const;
  /** Applies this model's intra-op thread count to the calling thread; returns the count in effect there. */
  int prepareCallingThread();

  const std::string& path() const;
  /** The settled device, e.g. "cpu" or "cuda:0". */
  const std::string& device() const;
  /** The CUDA device index, or -1 on the CPU. */
  int cudaDevice() const;
  /** forward's argument names without `self`. */
  const std::vector<std::string>& inputNames() const;
  /** How many inputs forward needs at least (arguments without default values). */
  size_t requiredInputs() const;
  int64_t parameterCount() const;
  int64_t parameterBytes() const;
  uint64_t forwardCalls() const;
  /** Optimised or original forward module, and why the original serves; Pending until the first forward. */
  OptimizeState optimizeState() const;

 private:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace torchd
