// Keeps the main thread's event loop from sleeping while a short native call is in flight.
#pragma once

#include <node_api.h>

#include <cstdint>

namespace torchd::addon {

/**
 * On this VM a thread whose vCPU has halted comes back tens of µs late and cold (bench/NOTES.md §35, §44): a
 * 0.1 ms forward costs 0.3 ms of wall time when the event loop sleeps in epoll_wait for its completion and
 * for the client's next request. While `pollFor`'s deadline lies ahead, an idle handle makes libuv poll with
 * a zero timeout (what a pending setImmediate does), so the completion's eventfd write and the next request
 * are seen by a running thread. Nothing waits synchronously: timers, sockets and other callbacks run as usual
 * on every turn, and each turn yields the CPU first, so a runnable thread on the same CPU (an executor, the
 * client) goes ahead of the poll. Main thread only.
 *
 * Built where libuv's header is found (Node's own include/node, which CMakeLists.txt looks up); without it
 * the poll is compiled out (`available()` false) and the loop sleeps as before.
 */
class LoopPoll {
 public:
  explicit LoopPoll(napi_env env);
  ~LoopPoll();
  LoopPoll(const LoopPoll&) = delete;
  LoopPoll& operator=(const LoopPoll&) = delete;

  static bool available();
  /** Polls until `micros` from now at least (extends, never shortens, the current deadline). */
  void pollFor(int micros);
  /** Loop turns taken while polling (a test hook). */
  uint64_t turns() const { return turns_; }

 private:
  struct Handle;
  Handle* handle_ = nullptr;  // freed by libuv's close callback, after this object is gone
  uint64_t deadlineNs_ = 0;
  uint64_t turns_ = 0;
};

}  // namespace torchd::addon
