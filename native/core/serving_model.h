// One served model instance, the unit both the addon and the harness run (Triton's pytorch_backend
// ModelInstanceState): the loaded Model (module + optimised module state) plus everything that is
// per instance rather than per model file: its executor threads (CPU) and one CUDA stream per lane,
// the intra-op thread count applied on those threads, worker resizing (retired threads joined), and
// the submission of forward / integrated-gradients work with a CancelToken. No Node types here:
// native/addon converts JS <-> these structs and dispatches; native/harness times the same path.
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cancel.h"
#include "errors.h"
#include "executor.h"
#include "model.h"
#include "tensor_io.h"

namespace torchd {

class ServingModel {
 public:
  /**
   * Called on the executor thread once the work returned or threw (the error is already an
   * EngineError with its code). It must not throw; the addon hands the result to the main thread here.
   */
  using Done = std::function<void(std::optional<EngineError> error)>;

  /** Serves `model` on `workers` (1..4096) executor threads. Throws EngineError E_ARGUMENT. */
  /** `spinMicros`: how long an executor thread polls for the next job after one (Executor). */
  ServingModel(std::shared_ptr<Model> model, int workers, int spinMicros = 0);
  /** Runs what is queued, then joins the executor threads. */
  ~ServingModel();
  ServingModel(const ServingModel&) = delete;
  ServingModel& operator=(const ServingModel&) = delete;

  /**
   * Queues a forward of `inputs` (views into memory the caller keeps alive until `done`); the result
   * lands in `*out` before `done` runs. A stopped `cancel` (may be null) skips it (E_CANCELLED).
   */
  void submitForward(std::vector<TensorView> inputs, std::shared_ptr<CancelToken> cancel,
                     std::shared_ptr<OutputNode> out, Done done);
  /** Queues integrated gradients (cancellable between chunks); the result lands in `*out`. */
  void submitIntegratedGradients(std::vector<TensorView> inputs, IgOptions options, std::shared_ptr<CancelToken> cancel,
                                 std::shared_ptr<IgResult> out, Done done);
  /**
   * Queues `work` to run on one of this instance's executor threads, with that lane's CUDA stream
   * current and the model's intra-op thread count applied: what the typed submits above build on, and
   * what the harness times. Whatever `work` throws reaches `done` as an EngineError.
   */
  void submit(std::function<void(Model& model)> work, Done done);
  /** Test hook: the intra-op thread count LibTorch reports on one of this instance's executor threads. */
  void submitProbeThreads(std::shared_ptr<int> out, Done done);

  /** Grows now; shrinking retires threads as they go idle, joined by a later resize/submit. Throws E_ARGUMENT. */
  void setWorkers(int workers);
  int workers() const;
  /** Executor threads started and not yet joined (live plus retired-but-unjoined). */
  int executorThreads() const;
  /** Jobs an executor thread took while still polling after its previous one (Executor::spinPickups). */
  long spinPickups() const;
  /** How long an executor thread polls after a short job (the constructor's `spinMicros`). */
  int spinMicros() const;
  /** The intra-op thread count this instance's executor threads run with. */
  int threads() const;

  /** Exit path: drops queued work, refuses new work, waits up to `timeout`; true when nothing runs. */
  bool quiesce(std::chrono::milliseconds timeout);
  /** Finishes (or drops) queued work and joins the executor threads. Idempotent. */
  void shutdown(bool dropQueued = false);

  const Model& model() const { return *model_; }

 private:
  std::shared_ptr<Model> model_;
  struct Streams;
  std::shared_ptr<Streams> streams_;  // CUDA: one stream per executor lane (empty struct on CPU builds)
  std::unique_ptr<Executor> executor_;
};

}  // namespace torchd
