#include "serving_model.h"

#include <mutex>
#include <new>
#include <utility>

#ifdef TORCHD_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace torchd {

/**
 * One CUDA stream per executor lane, so concurrent workers of one instance overlap on the GPU. Lanes
 * are small stable indices (executor.h) and a lane handed back by a scale-down keeps its stream for
 * the next grow. Empty on CPU-only builds.
 */
struct ServingModel::Streams {
#ifdef TORCHD_WITH_CUDA
  int device = -1;  // -1: the model is on the CPU, no stream is set
  std::mutex mutex;
  std::vector<c10::cuda::CUDAStream> pool;
  c10::cuda::CUDAStream forLane(int lane) {
    std::lock_guard<std::mutex> lock(mutex);
    while (static_cast<int>(pool.size()) <= lane) {
      pool.push_back(c10::cuda::getStreamFromPool(false, static_cast<c10::DeviceIndex>(device)));
    }
    return pool[lane];
  }
#endif
};

namespace {
void checkWorkers(int workers) {
  if (workers < 1 || workers > 4096) {
    throw EngineError(ErrorCode::Argument, "workers must be an integer in [1, 4096]", ErrorKind::RangeError);
  }
}
}  // namespace

ServingModel::ServingModel(std::shared_ptr<Model> model, int workers, int spinMicros)
    : model_(std::move(model)), streams_(std::make_shared<Streams>()) {
  checkWorkers(workers);
#ifdef TORCHD_WITH_CUDA
  streams_->device = model_->cudaDevice();
#endif
  // Each new executor thread takes this model's intra-op count before its first call: OpenMP keeps
  // the count per calling thread, so the instance's threads carry it and no other model's load can
  // change it (forward/IG apply it again, a no-op once set).
  std::weak_ptr<Model> weak = model_;
  executor_ = std::make_unique<Executor>(workers, [weak] {
    prepareTorchThread();
    if (auto m = weak.lock()) m->prepareCallingThread();
  }, spinMicros);
}

ServingModel::~ServingModel() { shutdown(); }

void ServingModel::submit(std::function<void(Model&)> work, Done done) {
  executor_->submit([work = std::move(work), done = std::move(done), model = model_, streams = streams_](int lane) {
    std::optional<EngineError> error;
    try {
#ifdef TORCHD_WITH_CUDA
      // Everything the work enqueues (staging copies, kernels, copies back) runs on this lane's stream.
      std::optional<c10::cuda::CUDAStreamGuard> streamGuard;
      if (streams->device >= 0) streamGuard.emplace(streams->forLane(lane));
#else
      (void)streams;
#endif
      work(*model);
    } catch (const EngineError& e) {
      error = e;
    } catch (const std::bad_alloc&) {
      error = EngineError(ErrorCode::OutOfMemory, "out of host memory");
    } catch (const std::exception& e) {
      error = EngineError(ErrorCode::Forward, e.what());
    } catch (...) {
      error = EngineError(ErrorCode::Forward, "unknown native error");
    }
    done(std::move(error));
  });
}

void ServingModel::submitForward(std::vector<TensorView> inputs, std::shared_ptr<CancelToken> cancel,
                                 std::shared_ptr<OutputNode> out, Done done) {
  submit([inputs = std::move(inputs), cancel = std::move(cancel), out](Model& model) {
    *out = model.forward(inputs, cancel.get());
  }, std::move(done));
}

void ServingModel::submitIntegratedGradients(std::vector<TensorView> inputs, IgOptions options,
                                             std::shared_ptr<CancelToken> cancel, std::shared_ptr<IgResult> out,
                                             Done done) {
  submit([inputs = std::move(inputs), options = std::move(options), cancel = std::move(cancel),
          out](Model& model) { *out = model.integratedGradients(inputs, options, cancel.get()); },
         std::move(done));
}

void ServingModel::submitProbeThreads(std::shared_ptr<int> out, Done done) {
  submit([out](Model& model) { *out = model.prepareCallingThread(); }, std::move(done));
}

void ServingModel::setWorkers(int workers) {
  checkWorkers(workers);
  executor_->resize(workers);
}

int ServingModel::workers() const { return executor_->size(); }
int ServingModel::executorThreads() const { return executor_->threadCount(); }
long ServingModel::spinPickups() const { return executor_->spinPickups(); }
int ServingModel::spinMicros() const { return executor_->spinMicros(); }
int ServingModel::threads() const { return model_->threads(); }

bool ServingModel::quiesce(std::chrono::milliseconds timeout) { return executor_->quiesce(timeout); }
void ServingModel::shutdown(bool dropQueued) { executor_->shutdown(dropQueued); }

}  // namespace torchd
