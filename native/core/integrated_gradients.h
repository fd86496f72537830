// Integrated gradients (Sundararajan et al. 2017) as captum computes them; see model_impl.h for the
// entry point used by Model::integratedGradients.
#pragma once
#include "model.h"
#include "quadrature.h"

#include <cstdint>

namespace torchd {

/**
 * A target entry that asks for the example's predicted class: argmax of F(x), taken from the endpoint
 * pass IG runs anyway, so callers need no separate forward to choose a default target. The addon
 * refuses negative targets from JS, so this value only ever comes from the addon itself.
 */
constexpr int64_t kArgmaxTarget = -1;

}  // namespace torchd
