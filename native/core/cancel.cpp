#include "cancel.h"

#include "errors.h"

namespace torchd {

namespace {
std::atomic<bool> gExiting{false};

int64_t toNs(CancelToken::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
}  // namespace

void markProcessExiting() { gExiting.store(true); }
bool processExiting() { return gExiting.load(); }

void CancelToken::cancel(const char* reason) {
  const char* expected = nullptr;
  reason_.compare_exchange_strong(expected, reason ? reason : "cancelled");
}

void CancelToken::setDeadline(Clock::time_point deadline) {
  int64_t ns = toNs(deadline);
  deadlineNs_.store(ns == 0 ? 1 : ns);
}

bool CancelToken::stopRequested() const {
  if (reason_.load() != nullptr || gExiting.load()) return true;
  int64_t deadline = deadlineNs_.load();
  return deadline != 0 && toNs(Clock::now()) >= deadline;
}

void CancelToken::throwIfStopped() const {
  if (const char* reason = reason_.load()) throw EngineError(ErrorCode::Cancelled, reason);
  if (gExiting.load()) throw EngineError(ErrorCode::Cancelled, "the process is exiting");
  int64_t deadline = deadlineNs_.load();
  if (deadline != 0 && toNs(Clock::now()) >= deadline) {
    throw EngineError(ErrorCode::Cancelled, "the request's deadline passed");
  }
}

}  // namespace torchd
