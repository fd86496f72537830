// Internal to native/core: what model.cpp and integrated_gradients.cpp share.
#pragma once
#include <torch/script.h>

#include <functional>

#include "errors.h"
#include "model.h"
#include "quadrature.h"

namespace torchd {

/** Maps any exception thrown while running the module to an EngineError with a chosen code. */
[[noreturn]] void rethrowAsEngineError(const char* what);

/** Runs the module on already-prepared device inputs; returns its raw result. */
using ForwardFn = std::function<c10::IValue(std::vector<c10::IValue>)>;

/**
 * Integrated gradients of forward's output (flattened to [N, K], column target[i] for example i)
 * w.r.t. x = inputs[0], from `baseline` to x along the straight line, integrated with `rule`,
 * `chunk` steps per pass. Other inputs are repeated for every scaled copy.
 */
IgResult computeIntegratedGradients(const ForwardFn& forward, const std::vector<at::Tensor>& inputs,
                                    const at::Tensor& baseline, const std::vector<int64_t>& target,
                                    const Quadrature& rule, int chunk);

}  // namespace torchd
