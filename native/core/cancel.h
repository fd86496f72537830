// Cooperative cancellation of native work. LibTorch cannot be interrupted inside an operator, so a
// call checks its token at safe points only (before it starts; between integrated-gradients chunks)
// and throws EngineError E_CANCELLED there. A token stops when it is cancelled (client gone, request
// aborted), when its deadline passes, or when the process is exiting.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace torchd {

class CancelToken {
 public:
  using Clock = std::chrono::steady_clock;

  /** Thread-safe; the first reason given is kept. */
  void cancel(const char* reason = "cancelled");
  /** Stops the work once `deadline` passes (steady clock); set before the call starts. */
  void setDeadline(Clock::time_point deadline);
  /** Cancelled, past its deadline, or the process is exiting. */
  bool stopRequested() const;
  /** Throws EngineError(E_CANCELLED) saying why when stopRequested(). */
  void throwIfStopped() const;

 private:
  std::atomic<const char*> reason_{nullptr};
  std::atomic<int64_t> deadlineNs_{0};  // 0 = none; Clock's epoch
};

/**
 * Marks the process as exiting: every token reports stopRequested() from now on, so running work
 * stops at its next safe point. Called from the exit hook before any static destructor runs.
 */
void markProcessExiting();
bool processExiting();

}  // namespace torchd
