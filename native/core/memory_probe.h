// Measures how much host memory a piece of LibTorch work holds at its peak, so integrated gradients
// can size its chunks to a memory budget from a measurement instead of a guess about the model.
#pragma once
#include <cstdint>
#include <memory>

namespace torchd {

/**
 * Wraps c10's CPU allocator once per process (idempotent) with one that can attribute allocations
 * to a MemoryProbe. False when it could not be installed (another allocator took precedence, or the
 * current one has no raw deleter to forward to); probes then measure nothing.
 */
bool installAllocationCounter();

/**
 * While alive, CPU tensor allocations made on the constructing thread are counted against this
 * probe until they are freed (on whatever thread frees them). peakBytes() is the high-water mark
 * of bytes held. Allocations by OpenMP helper threads and oneDNN's private scratchpads are not seen,
 * which is why callers keep a margin; CUDA memory is measured separately by the caller.
 */
class MemoryProbe {
 public:
  MemoryProbe();
  ~MemoryProbe();
  MemoryProbe(const MemoryProbe&) = delete;
  MemoryProbe& operator=(const MemoryProbe&) = delete;

  int64_t peakBytes() const;
  int64_t currentBytes() const;
  /** True when the counting allocator is installed (else the figures stay 0). */
  bool active() const;

  struct Counter;

 private:
  std::shared_ptr<Counter> counter_;
  Counter* previous_ = nullptr;
};

}  // namespace torchd
