#include "quadrature.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <mutex>
#include <utility>

#include "cancel.h"
#include "errors.h"

namespace torchd {

namespace {

/** P_n(x) and P_{n-1}(x) by the three-term recurrence: O(n). */
std::pair<double, double> legendre(int n, double x) {
  double p0 = 1, p1 = x;
  for (int k = 2; k <= n; ++k) {
    double pk = ((2.0 * k - 1) * x * p1 - (k - 1.0) * p0) / k;
    p0 = p1;
    p1 = pk;
  }
  return n == 1 ? std::make_pair(x, 1.0) : std::make_pair(p1, p0);
}

Quadrature computeGaussLegendre(int n, const CancelToken* cancel) {
  Quadrature q;
  q.alphas.resize(n);
  q.weights.resize(n);
  const double pi = std::acos(-1.0);
  // Nodes are symmetric about 0: compute the non-negative half (i < ceil(n/2)) and mirror it.
  const int half = (n + 1) / 2;
  for (int i = 0; i < half; ++i) {
    if (cancel && (i & 63) == 0) cancel->throwIfStopped();
    // Tricomi's approximation of the i-th root (descending): within O(n^-4) of it, so Newton needs
    // two or three steps. The old stopping rule |dx| < 1e-16 was below double precision and ran the
    // full 100 iterations for most nodes, which made 20 000 steps cost seconds.
    const double theta = pi * (i + 0.75) / (n + 0.5);
    double x = (1.0 - (n - 1.0) / (8.0 * n * n * n) - 1.0 / (384.0 * n * n * n * n) *
                          (39.0 - 28.0 / (std::sin(theta) * std::sin(theta)))) *
               std::cos(theta);
    double dp = 0;
    for (int iter = 0; iter < 10; ++iter) {
      auto [pn, pnm1] = legendre(n, x);
      dp = n * (x * pn - pnm1) / (x * x - 1);
      double dx = pn / dp;
      x -= dx;
      if (std::fabs(dx) <= 4e-16 * std::max(1.0, std::fabs(x))) break;
    }
    auto [pn, pnm1] = legendre(n, x);
    dp = n * (x * pn - pnm1) / (x * x - 1);
    const double w = 2.0 / ((1 - x * x) * dp * dp);
    if (n % 2 == 1 && i == half - 1) x = 0.0;  // the middle node of an odd rule is exactly 0
    // Node i (descending x) is alpha index n-1-i ascending; its mirror -x is alpha index i.
    q.alphas[n - 1 - i] = 0.5 * (x + 1.0);
    q.weights[n - 1 - i] = 0.5 * w;
    q.alphas[i] = 0.5 * (1.0 - x);
    q.weights[i] = 0.5 * w;
  }
  return q;
}

}  // namespace

Quadrature gaussLegendre(int n, const CancelToken* cancel) {
  if (n < 1) throw EngineError(ErrorCode::Argument, "steps must be >= 1", ErrorKind::RangeError);
  // Explanations of one model mostly ask for the same n: keep the last few rules.
  // Leaked, like every static an executor thread touches: it must outlive exit-time destructors.
  static auto* mutex = new std::mutex();
  static auto* cache = new std::deque<std::pair<int, Quadrature>>();
  {
    std::lock_guard<std::mutex> lock(*mutex);
    for (const auto& [size, rule] : *cache) {
      if (size == n) return rule;
    }
  }
  Quadrature q = computeGaussLegendre(n, cancel);
  std::lock_guard<std::mutex> lock(*mutex);
  cache->emplace_front(n, q);
  if (cache->size() > 4) cache->pop_back();
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
