#include "loop_poll.h"

#include <sched.h>

#include <chrono>

#if __has_include(<uv.h>)
#include <uv.h>
#define TORCHD_LOOP_POLL 1
#endif

namespace torchd::addon {

#ifdef TORCHD_LOOP_POLL

namespace {
uint64_t nowNs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}
}  // namespace

struct LoopPoll::Handle {
  uv_idle_t idle;
  LoopPoll* owner;
};

bool LoopPoll::available() { return true; }

LoopPoll::LoopPoll(napi_env env) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) return;
  handle_ = new Handle{{}, this};
  uv_idle_init(loop, &handle_->idle);
  handle_->idle.data = handle_;
  // An active idle handle only sets the poll timeout to zero; unreferenced, it never keeps the loop (and so
  // the process) alive on its own.
  uv_unref(reinterpret_cast<uv_handle_t*>(&handle_->idle));
}

LoopPoll::~LoopPoll() {
  if (handle_ == nullptr) return;
  handle_->owner = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&handle_->idle), [](uv_handle_t* h) { delete static_cast<Handle*>(h->data); });
}

void LoopPoll::pollFor(int micros) {
  if (handle_ == nullptr || micros <= 0) return;
  uint64_t deadline = nowNs() + static_cast<uint64_t>(micros) * 1000;
  if (deadline > deadlineNs_) deadlineNs_ = deadline;
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&handle_->idle))) {
    uv_idle_start(&handle_->idle, [](uv_idle_t* idle) {
      LoopPoll* self = static_cast<Handle*>(idle->data)->owner;
      if (self == nullptr || nowNs() >= self->deadlineNs_) {
        uv_idle_stop(idle);
        return;
      }
      ++self->turns_;
      sched_yield();
    });
  }
}

#else

struct LoopPoll::Handle {};
bool LoopPoll::available() { return false; }
LoopPoll::LoopPoll(napi_env) {}
LoopPoll::~LoopPoll() = default;
void LoopPoll::pollFor(int) {}

#endif

}  // namespace torchd::addon
