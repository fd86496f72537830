#include "executor.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include <set>

#include "cancel.h"
#include "errors.h"

namespace torchd {

namespace {
// Leaked on purpose: it must still exist when atexit handlers run, whatever the destructor order.
std::mutex& registryMutex() {
  static auto* m = new std::mutex();
  return *m;
}
std::set<Executor*>& registry() {
  static auto* r = new std::set<Executor*>();
  return *r;
}
}  // namespace

Executor::Executor(int workers, std::function<void()> onThreadStart, int spinMicros)
    : onThreadStart_(std::move(onThreadStart)), spinMicros_(std::max(0, spinMicros)) {
  {
    std::lock_guard<std::mutex> lock(registryMutex());
    registry().insert(this);
  }
  resize(workers);
}

Executor::~Executor() {
  shutdown();
  std::lock_guard<std::mutex> lock(registryMutex());
  registry().erase(this);
}

void Executor::shutdownAllForExit(int status, std::chrono::milliseconds grace, bool join) {
  markProcessExiting();
  std::vector<Executor*> all;
  {
    std::lock_guard<std::mutex> lock(registryMutex());
    all.assign(registry().begin(), registry().end());
  }
  const auto until = std::chrono::steady_clock::now() + grace;
  bool idle = true;
  for (Executor* e : all) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    idle = e->quiesce(std::max(left, std::chrono::milliseconds(0))) && idle;
  }
  if (!idle) {
    std::fflush(nullptr);
    _exit(status);
  }
  // Joined now, while LibTorch is whole: their thread-local destructors (OpenMP teams, oneDNN
  // scratchpads) need it.
  if (join) {
    for (Executor* e : all) e->shutdown(/*dropQueued=*/true);
  }
}

void Executor::spawnLocked() {
  int lane = 0;
  while (lane < static_cast<int>(laneBusy_.size()) && laneBusy_[lane]) ++lane;
  if (lane == static_cast<int>(laneBusy_.size())) laneBusy_.push_back(false);
  laneBusy_[lane] = true;
  ++live_;
  threads_.emplace_back([this, lane] { run(lane); });
}

std::vector<std::thread> Executor::takeRetiredLocked() {
  std::vector<std::thread> done;
  for (auto id : retired_) {
    for (auto it = threads_.begin(); it != threads_.end(); ++it) {
      if (it->get_id() == id) {
        done.push_back(std::move(*it));
        threads_.erase(it);
        break;
      }
    }
  }
  retired_.clear();
  return done;
}

void Executor::resize(int workers) {
  if (workers < 1) throw EngineError(ErrorCode::Argument, "workers must be >= 1", ErrorKind::RangeError);
  std::vector<std::thread> retired;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return;
    retired = takeRetiredLocked();
    target_ = workers;
    while (live_ < target_) spawnLocked();
  }
  wake_.notify_all();
  // Retired threads have left run() (they registered themselves under the lock on the way out), so
  // these joins only wait for their thread-local destructors (LibTorch's, OpenMP's thread team).
  for (auto& t : retired) t.join();
}

int Executor::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return target_;
}

int Executor::threadCount() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int>(threads_.size());
}

int Executor::running() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return running_;
}

void Executor::submit(Job job) {
  std::vector<std::thread> retired;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return;
    queue_.push_back(std::move(job));
    queued_.fetch_add(1, std::memory_order_relaxed);
    retired = takeRetiredLocked();
  }
  wake_.notify_one();
  for (auto& t : retired) t.join();
}

void Executor::run(int lane) {
  if (onThreadStart_) onThreadStart_();
  std::unique_lock<std::mutex> lock(mutex_);
  bool shortJob = false;
  for (;;) {
    if (shortJob && !stopping_) {
      // Poll only right after a job that took less than the poll (a thread idle since start-up or its
      // last poll sleeps; so does one after a long forward, where a wake-up is noise and the poll's CPU
      // would be taken from the image threads: bench/NOTES.md §41). sched_yield lets any runnable thread
      // on this CPU go first. stopping_ is read under the lock below; the poll is bounded anyway.
      if (queue_.empty()) {
        lock.unlock();
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spinMicros_);
        while (queued_.load(std::memory_order_relaxed) == 0 && std::chrono::steady_clock::now() < until) sched_yield();
        lock.lock();
      }
      // A job already queued when the thread got here counts too: it is taken without a sleep either way.
      if (!queue_.empty()) spinPickups_.fetch_add(1, std::memory_order_relaxed);
    }
    shortJob = false;
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || live_ > target_; });
    if (live_ > target_ && !stopping_) {
      // Retire: hand the lane back so a later grow can reuse it (and its CUDA stream), and leave
      // this thread's id for the next resize/submit to join.
      --live_;
      laneBusy_[lane] = false;
      retired_.push_back(std::this_thread::get_id());
      return;
    }
    if (queue_.empty()) {
      if (stopping_) return;
      continue;
    }
    Job job = std::move(queue_.front());
    queue_.pop_front();
    queued_.fetch_sub(1, std::memory_order_relaxed);
    ++running_;
    lock.unlock();
    if (spinMicros_ > 0) {
      const auto started = std::chrono::steady_clock::now();
      job(lane);
      shortJob = std::chrono::steady_clock::now() - started < std::chrono::microseconds(spinMicros_);
    } else {
      job(lane);
    }
    lock.lock();
    --running_;
    idle_.notify_all();
  }
}

void Executor::clearQueueLocked() {
  queue_.clear();
  queued_.store(0, std::memory_order_relaxed);
}

bool Executor::quiesce(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  clearQueueLocked();
  stopping_ = true;
  wake_.notify_all();
  return idle_.wait_for(lock, timeout, [&] { return running_ == 0; });
}

void Executor::shutdown(bool dropQueued) {
  std::list<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (dropQueued) clearQueueLocked();
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
    threads.swap(threads_);
    retired_.clear();
  }
  wake_.notify_all();
  for (auto& t : threads) {
    if (t.joinable()) t.join();
  }
}

}  // namespace torchd
