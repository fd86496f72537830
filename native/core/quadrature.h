// Integration rules on [0, 1] for integrated gradients (the same ones captum offers).
#pragma once
#include <vector>

namespace torchd {

struct Quadrature {
  std::vector<double> alphas;   // points in [0, 1]
  std::vector<double> weights;  // sum to 1
};

/** n-point Gauss–Legendre rule mapped from [-1, 1] to [0, 1] (numpy.polynomial.legendre.leggauss). */
Quadrature gaussLegendre(int n);
/** captum's riemann_trapezoid: n evenly spaced points, end weights halved; n >= 2. */
Quadrature riemannTrapezoid(int n);

}  // namespace torchd
