// A pool of threads owned by one model instance (not libuv's pool, which fs, multer and sharp share).
// Jobs run FIFO; each job learns its lane (a small, stable worker index used to pick a CUDA
// stream), and no two running jobs share a lane.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <thread>
#include <vector>

namespace torchd {

class Executor {
 public:
  using Job = std::function<void(int lane)>;

  /**
   * Starts `workers` (>= 1) threads; `onThreadStart` runs first on each new thread. A thread that has
   * just finished a job shorter than `spinMicros` polls the queue for up to `spinMicros` (yielding the
   * CPU to anything runnable) before it sleeps on the condition variable: on a VM, waking a thread whose
   * vCPU has halted costs tens of µs and a cold cache, more than a small model's whole forward
   * (bench/NOTES.md §35, §41).
   */
  explicit Executor(int workers, std::function<void()> onThreadStart = {}, int spinMicros = 0);
  /** Runs what is queued, then joins every thread. */
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  /** Queues a job; it must not throw (the caller catches inside). Dropped once stopping. */
  void submit(Job job);
  /**
   * Grows now; shrinking retires idle threads as they finish their current job (never blocks).
   * Threads retired earlier are joined here (they have returned already, so this is quick).
   */
  void resize(int workers);
  int size() const;
  /** Threads started and not yet joined (live plus retired-but-unjoined): a test hook. */
  int threadCount() const;
  /** Jobs running now. */
  int running() const;
  /** Jobs a thread took after a job shorter than the poll without sleeping in between (a test hook). */
  long spinPickups() const { return spinPickups_.load(std::memory_order_relaxed); }
  int spinMicros() const { return spinMicros_; }
  /** Finishes queued jobs (or drops them) and joins all threads; later submits are dropped. Idempotent. */
  void shutdown(bool dropQueued = false);
  /**
   * Stops taking work: drops queued jobs, refuses new ones, and waits up to `timeout` for the running
   * ones to return. True when none is running any more (the threads then only wait to be joined).
   */
  bool quiesce(std::chrono::milliseconds timeout);

  /**
   * For exit(), from a handler that runs before LibTorch's static destructors (see addon.cpp):
   * marks the process exiting (running jobs stop at their next safe point), drops every executor's
   * queue and waits up to `grace` for running jobs. Then either joins every thread (all idle), or
   * ends the process at once with _exit(status), because a job still inside a LibTorch operator
   * would crash in the destructors exit() is about to run. `join` false leaves idle threads parked
   * (for a handler that runs after LibTorch's statics are gone, where joining would run their
   * thread-local destructors against torn-down libraries).
   */
  static void shutdownAllForExit(int status, std::chrono::milliseconds grace, bool join = true);

 private:
  void run(int lane);
  void spawnLocked();
  std::vector<std::thread> takeRetiredLocked();
  /** Drops every queued job, keeping queued_ equal to queue_.size(). */
  void clearQueueLocked();

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable idle_;  // signalled when a job returns
  std::deque<Job> queue_;
  std::list<std::thread> threads_;
  std::vector<std::thread::id> retired_;  // returned from run(), waiting to be joined
  std::vector<bool> laneBusy_;            // lane ids in use by live threads
  std::function<void()> onThreadStart_;
  int target_ = 0;
  int live_ = 0;
  int running_ = 0;
  bool stopping_ = false;
  std::atomic<int> queued_{0};  // queue_.size(), readable without the lock by a polling thread
  std::atomic<long> spinPickups_{0};
  const int spinMicros_;
};

}  // namespace torchd
