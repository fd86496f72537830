// Internal to native/core: what model.cpp and integrated_gradients.cpp share.
#pragma once
#include <torch/script.h>

#include <functional>

#include "cancel.h"
#include "errors.h"
#include "model.h"
#include "quadrature.h"

namespace torchd {

/** Maps any exception thrown while running the module to an EngineError with a chosen code. */
[[noreturn]] void rethrowAsEngineError(const char* what);

/** Runs the module on already-prepared device inputs; returns its raw result. */
using ForwardFn = std::function<c10::IValue(std::vector<c10::IValue>)>;

/** How integrated gradients paces itself: chunk size, memory budget, and when to stop. */
struct IgControl {
  /** Most integration steps per forward/backward pass; 0 = no limit of its own. */
  int chunk = 0;
  /** Bytes one explanation may hold beyond its inputs; 0 = unbounded. See computeIntegratedGradients. */
  int64_t memoryBudget = 0;
  /** Checked before the first pass and between chunks (may be null). */
  const CancelToken* cancel = nullptr;
  /** CUDA only: the device whose caching-allocator statistics measure a step (else the CPU probe). */
  int cudaDevice = -1;
};

/**
 * Integrated gradients of forward's output (flattened to [N, K], column target[i] for example i)
 * w.r.t. x = inputs[0], from `baseline` to x along the straight line, integrated with `rule`.
 * Other inputs are repeated for every scaled copy. With a memory budget, the first pass runs a
 * single step under a MemoryProbe; its peak is taken as the cost of one step (an over-estimate: it
 * also holds the pass's fixed costs), and the remaining passes run floor(budget / cost) steps each.
 * Throws EngineError E_CANCELLED at a safe point once control.cancel says stop.
 */
IgResult computeIntegratedGradients(const ForwardFn& forward, const std::vector<at::Tensor>& inputs,
                                    const at::Tensor& baseline, const std::vector<int64_t>& target,
                                    const Quadrature& rule, const IgControl& control);

}  // namespace torchd
