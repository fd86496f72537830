#include "memory_probe.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <atomic>
#include <mutex>
#include <unordered_map>

namespace torchd {

struct MemoryProbe::Counter {
  std::atomic<int64_t> current{0};
  std::atomic<int64_t> peak{0};
  void add(int64_t n) {
    int64_t now = current.fetch_add(n) + n;
    int64_t seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
  }
};

namespace {

thread_local MemoryProbe::Counter* tCounter = nullptr;

struct Tracked {
  std::shared_ptr<MemoryProbe::Counter> counter;
  int64_t bytes;
};

/**
 * Forwards to the allocator it replaced. Every DataPtr it returns has the same raw deleter (c10
 * requires that when raw_deleter() is non-null), with context == data, so raw_allocate keeps working.
 * Allocations made while a probe is active on the calling thread go into a side table that the
 * deleter consults; the table is only touched while something tracked is alive.
 */
class CountingAllocator final : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* base) : base_(base), baseDelete_(base->raw_deleter()) {}

  c10::DataPtr allocate(size_t n) const override {
    c10::DataPtr inner = base_->allocate(n);
    void* data = inner.get();
    if (inner.get_context() != data) return inner;  // not a raw allocation: leave it alone
    inner.release_context();
    MemoryProbe::Counter* counter = tCounter;
    if (counter && n > 0 && data) {
      std::lock_guard<std::mutex> lock(mutex());
      // The shared_ptr keeps the counter alive for frees after the probe ended.
      table().emplace(data, Tracked{shared(counter), static_cast<int64_t>(n)});
      tracked().fetch_add(1);
      counter->add(static_cast<int64_t>(n));
    }
    return {data, data, &countingDelete, inner.device()};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &countingDelete; }

  static void countingDelete(void* data) {
    if (tracked().load() > 0) {
      std::lock_guard<std::mutex> lock(mutex());
      auto it = table().find(data);
      if (it != table().end()) {
        it->second.counter->current.fetch_sub(it->second.bytes);
        table().erase(it);
        tracked().fetch_sub(1);
      }
    }
    instance()->baseDelete_(data);
  }

  static CountingAllocator*& instance() {
    static CountingAllocator* self = nullptr;
    return self;
  }

  // Leaked on purpose: frees can happen during static destruction at exit.
  static std::mutex& mutex() {
    static auto* m = new std::mutex();
    return *m;
  }
  static std::unordered_map<void*, Tracked>& table() {
    static auto* t = new std::unordered_map<void*, Tracked>();
    return *t;
  }
  static std::atomic<int64_t>& tracked() {
    static auto* n = new std::atomic<int64_t>(0);
    return *n;
  }
  static std::unordered_map<MemoryProbe::Counter*, std::weak_ptr<MemoryProbe::Counter>>& owners() {
    static auto* o = new std::unordered_map<MemoryProbe::Counter*, std::weak_ptr<MemoryProbe::Counter>>();
    return *o;
  }
  static std::shared_ptr<MemoryProbe::Counter> shared(MemoryProbe::Counter* c) {
    auto it = owners().find(c);
    return it == owners().end() ? nullptr : it->second.lock();
  }

 private:
  c10::Allocator* base_;
  c10::DeleterFnPtr baseDelete_;
};

std::atomic<bool> gInstalled{false};

}  // namespace

bool installAllocationCounter() {
  static std::once_flag once;
  std::call_once(once, [] {
    c10::Allocator* base = c10::GetAllocator(c10::DeviceType::CPU);
    if (!base || !base->raw_deleter()) return;
    // Leaked: tensors allocated through it may be freed at any time until the process ends.
    auto* counting = new CountingAllocator(base);
    CountingAllocator::instance() = counting;
    // Priority above the default allocator's 0 so a later default registration cannot displace it.
    c10::SetAllocator(c10::DeviceType::CPU, counting, /*priority=*/1);
    gInstalled.store(c10::GetAllocator(c10::DeviceType::CPU) == counting);
  });
  return gInstalled.load();
}

MemoryProbe::MemoryProbe() : counter_(std::make_shared<Counter>()), previous_(tCounter) {
  {
    std::lock_guard<std::mutex> lock(CountingAllocator::mutex());
    CountingAllocator::owners()[counter_.get()] = counter_;
  }
  tCounter = counter_.get();
}

MemoryProbe::~MemoryProbe() {
  tCounter = previous_;
  std::lock_guard<std::mutex> lock(CountingAllocator::mutex());
  CountingAllocator::owners().erase(counter_.get());
}

int64_t MemoryProbe::peakBytes() const { return counter_->peak.load(); }
int64_t MemoryProbe::currentBytes() const { return counter_->current.load(); }
bool MemoryProbe::active() const { return gInstalled.load(); }

}  // namespace torchd
