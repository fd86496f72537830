#include "quadrature.h"

#include <cmath>

#include "errors.h"

namespace torchd {

Quadrature gaussLegendre(int n) {
  if (n < 1) throw EngineError(ErrorCode::Argument, "steps must be >= 1", ErrorKind::RangeError);
  Quadrature q;
  q.alphas.resize(n);
  q.weights.resize(n);
  const double pi = std::acos(-1.0);
  // Newton iteration on P_n from the Chebyshev-like initial guess; converges to machine precision
  // in a handful of steps for every n used here.
  for (int i = 0; i < n; ++i) {
    double x = std::cos(pi * (i + 0.75) / (n + 0.5));
    double dp = 0;
    for (int iter = 0; iter < 100; ++iter) {
      double p0 = 1, p1 = x;
      for (int k = 2; k <= n; ++k) {
        double pk = ((2.0 * k - 1) * x * p1 - (k - 1.0) * p0) / k;
        p0 = p1;
        p1 = pk;
      }
      double pn = n == 0 ? 1 : (n == 1 ? x : p1);
      double pnm1 = n == 1 ? 1 : p0;
      dp = n * (x * pn - pnm1) / (x * x - 1);
      double dx = pn / dp;
      x -= dx;
      if (std::fabs(dx) < 1e-16) break;
    }
    // Recompute the derivative at the converged node for the weight.
    double p0 = 1, p1 = x;
    for (int k = 2; k <= n; ++k) {
      double pk = ((2.0 * k - 1) * x * p1 - (k - 1.0) * p0) / k;
      p0 = p1;
      p1 = pk;
    }
    double pn = n == 1 ? x : p1;
    double pnm1 = n == 1 ? 1 : p0;
    dp = n * (x * pn - pnm1) / (x * x - 1);
    double w = 2.0 / ((1 - x * x) * dp * dp);
    // Nodes come out descending in x; store ascending alphas like numpy's leggauss.
    q.alphas[n - 1 - i] = 0.5 * (x + 1.0);
    q.weights[n - 1 - i] = 0.5 * w;
  }
  return q;
}

Quadrature riemannTrapezoid(int n) {
  if (n < 2) {
    throw EngineError(ErrorCode::Argument, "riemann_trapezoid needs steps >= 2", ErrorKind::RangeError);
  }
  Quadrature q;
  const double h = 1.0 / (n - 1);
  for (int i = 0; i < n; ++i) {
    q.alphas.push_back(i * h);
    q.weights.push_back((i == 0 || i == n - 1) ? 0.5 * h : h);
  }
  return q;
}

}  // namespace torchd
