// Integrated gradients (Sundararajan et al. 2017) as captum computes them; see model_impl.h for the
// entry point used by Model::integratedGradients.
#pragma once
#include "model.h"
#include "quadrature.h"
