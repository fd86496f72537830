#include "executor.h"

#include "errors.h"

#include <set>

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

Executor::Executor(int workers, std::function<void()> onThreadStart)
    : onThreadStart_(std::move(onThreadStart)) {
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

void Executor::shutdownAllForExit() {
  std::vector<Executor*> all;
  {
    std::lock_guard<std::mutex> lock(registryMutex());
    all.assign(registry().begin(), registry().end());
  }
  for (Executor* e : all) e->shutdown(/*dropQueued=*/true);
}

void Executor::spawnLocked() {
  int lane = 0;
  while (lane < static_cast<int>(laneBusy_.size()) && laneBusy_[lane]) ++lane;
  if (lane == static_cast<int>(laneBusy_.size())) laneBusy_.push_back(false);
  laneBusy_[lane] = true;
  ++live_;
  threads_.emplace_back([this, lane] { run(lane); });
}

void Executor::resize(int workers) {
  if (workers < 1) throw EngineError(ErrorCode::Argument, "workers must be >= 1", ErrorKind::RangeError);
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopping_) return;
  target_ = workers;
  while (live_ < target_) spawnLocked();
  wake_.notify_all();
}

int Executor::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return target_;
}

void Executor::submit(Job job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return;
    queue_.push_back(std::move(job));
  }
  wake_.notify_one();
}

void Executor::run(int lane) {
  if (onThreadStart_) onThreadStart_();
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || live_ > target_; });
    if (live_ > target_ && !stopping_) {
      // Retire: hand the lane back so a later grow can reuse it (and its CUDA stream).
      --live_;
      laneBusy_[lane] = false;
      return;
    }
    if (queue_.empty()) {
      if (stopping_) return;
      continue;
    }
    Job job = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    job(lane);
    lock.lock();
  }
}

void Executor::shutdown(bool dropQueued) {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (dropQueued) queue_.clear();
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
    threads.swap(threads_);
  }
  wake_.notify_all();
  for (auto& t : threads) {
    if (t.joinable()) t.join();
  }
}

}  // namespace torchd
