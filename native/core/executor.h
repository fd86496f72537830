// A pool of threads owned by one model (not libuv's pool, which fs, multer and sharp share).
// Jobs run FIFO; each job learns its lane (a small, stable worker index used to pick a CUDA
// stream), and no two running jobs share a lane.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace torchd {

class Executor {
 public:
  using Job = std::function<void(int lane)>;

  /** Starts `workers` (>= 1) threads; `onThreadStart` runs first on each new thread. */
  explicit Executor(int workers, std::function<void()> onThreadStart = {});
  /** Runs what is queued, then joins every thread. */
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  /** Queues a job; it must not throw (the caller catches inside). */
  void submit(Job job);
  /** Grows now; shrinking retires idle threads as they finish their current job (never blocks). */
  void resize(int workers);
  int size() const;
  /** Finishes queued jobs (or drops them) and joins all threads; later submits are dropped. Idempotent. */
  void shutdown(bool dropQueued = false);

  /**
   * For process exit (an atexit handler): drops every executor's queued jobs and waits for the
   * running ones, so no thread is inside LibTorch while its static destructors run.
   */
  static void shutdownAllForExit();

 private:
  void run(int lane);
  void spawnLocked();

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> queue_;
  std::vector<std::thread> threads_;
  std::vector<bool> laneBusy_;  // lane ids in use by live threads
  std::function<void()> onThreadStart_;
  int target_ = 0;
  int live_ = 0;
  bool stopping_ = false;
};

}  // namespace torchd
