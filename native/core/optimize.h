// The optimised forward module: a frozen, inference-optimised copy of a TorchScript module, and the
// output comparison that decides whether it may serve (shared/design.md: forward runs the optimised
// copy, integrated gradients the original).
#pragma once
#include <torch/script.h>

#include <string>

namespace torchd {

/**
 * torch::jit::freeze (parameters become constants, conv/bn folded), then on CPU
 * torch::jit::optimize_for_inference (oneDNN rewrites). `module` must be in eval mode. Throws whatever
 * the passes throw (a module they cannot handle): the caller then serves the original.
 */
torch::jit::Module optimizedForInference(const torch::jit::Module& module, bool cpu);

/**
 * Compares two forward results of the same input. Tensors match when shape and dtype agree and, for
 * floating types, max|candidate − reference| ≤ rtol · max|reference| (exact equality for the others);
 * tuples, lists and dicts element by element, scalars and strings exactly. Returns "" when they
 * match, else where and by how much they differ (for the warning that the original serves).
 */
std::string compareOutputs(const c10::IValue& candidate, const c10::IValue& reference, double rtol);

}  // namespace torchd
