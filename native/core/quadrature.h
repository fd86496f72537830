// Integration rules on [0, 1] for integrated gradients (the same ones captum offers).
#pragma once
#include <vector>

namespace torchd {

class CancelToken;

struct Quadrature {
  std::vector<double> alphas;   // points in [0, 1]
  std::vector<double> weights;  // sum to 1
};

/**
 * n-point Gauss–Legendre rule mapped from [-1, 1] to [0, 1] (numpy.polynomial.legendre.leggauss).
 * O(n) per node (a few Newton steps on the three-term recurrence, half the nodes by symmetry), so
 * O(n²) in all; the last few rules are cached. Checks `cancel` (may be null) between nodes, so a
 * huge n never holds a worker past its deadline.
 */
Quadrature gaussLegendre(int n, const CancelToken* cancel = nullptr);
/** captum's riemann_trapezoid: n evenly spaced points, end weights halved; n >= 2. */
Quadrature riemannTrapezoid(int n);

}  // namespace torchd
