#include "integrated_gradients.h"

#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <optional>

#include "memory_probe.h"
#include "model_impl.h"
#include "tensor_io_torch.h"

#ifdef TORCHD_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace torchd {

namespace {

/** forward's result as a [rows, K] score matrix (a tuple/list result contributes its first tensor). */
at::Tensor scores(const c10::IValue& out, int64_t rows) {
  c10::IValue v = out;
  while (v.isTuple() || v.isList()) {
    if (v.isTuple()) {
      const auto& e = v.toTupleRef().elements();
      if (e.empty()) break;
      v = e[0];
    } else {
      auto l = v.toList();
      if (l.empty()) break;
      v = l.get(0);
    }
  }
  if (!v.isTensor()) {
    throw EngineError(ErrorCode::Forward, "integrated gradients needs forward to return a tensor of scores");
  }
  at::Tensor t = v.toTensor();
  if (t.dim() < 1 || t.size(0) != rows) {
    throw EngineError(ErrorCode::Shape, "integrated gradients needs scores shaped [batch, ...]; got " +
                                            c10::str(t.sizes()) + " for a batch of " + std::to_string(rows),
                      ErrorKind::RangeError);
  }
  return t.reshape({rows, -1});
}

/** Repeats `t` (shape [N, ...]) `copies` times along the batch dim: [copies * N, ...]. */
at::Tensor repeatBatch(const at::Tensor& t, int64_t copies) {
  if (copies == 1) return t;
  std::vector<int64_t> expanded{copies};
  expanded.insert(expanded.end(), t.sizes().begin(), t.sizes().end());
  std::vector<int64_t> flat{copies * t.size(0)};
  flat.insert(flat.end(), t.sizes().begin() + 1, t.sizes().end());
  return t.unsqueeze(0).expand(expanded).reshape(flat);
}

}  // namespace

IgResult computeIntegratedGradients(const ForwardFn& forward, const std::vector<at::Tensor>& inputs,
                                    const at::Tensor& baseline, const std::vector<int64_t>& target,
                                    const Quadrature& rule, const IgControl& control) {
  const at::Tensor& x = inputs[0];
  const int64_t n = x.size(0);
  const int steps = static_cast<int>(rule.alphas.size());
  int perPass = control.chunk <= 0 || control.chunk > steps ? steps : control.chunk;
  auto checkpoint = [&] {
    if (control.cancel) control.cancel->throwIfStopped();
  };
  checkpoint();

  auto argsFor = [&](const at::Tensor& first, int64_t copies) {
    std::vector<c10::IValue> args{first};
    for (size_t i = 1; i < inputs.size(); ++i) args.emplace_back(repeatBatch(inputs[i], copies));
    return args;
  };

  // Endpoints F(x)_t and F(baseline)_t for the completeness delta, in one pass without a graph; the
  // same F(x) resolves kArgmaxTarget entries to the predicted class.
  at::Tensor endpointGap;
  at::Tensor targetIndex;
  {
    torch::NoGradGuard noGrad;
    at::Tensor both = scores(forward(argsFor(at::cat({x, baseline}), 2)), 2 * n);
    const int64_t k = both.size(1);
    std::vector<int64_t> resolved = target;
    at::Tensor predicted;
    for (int64_t i = 0; i < n; ++i) {
      if (target[i] == kArgmaxTarget) {
        if (!predicted.defined()) predicted = both.slice(0, 0, n).argmax(1).to(at::kCPU).contiguous();
        resolved[i] = predicted.data_ptr<int64_t>()[i];
      } else if (target[i] < 0 || target[i] >= k) {
        throw EngineError(ErrorCode::Argument,
                          "target[" + std::to_string(i) + "] = " + std::to_string(target[i]) +
                              " is out of range for " + std::to_string(k) + " outputs",
                          ErrorKind::RangeError);
      }
    }
    targetIndex = torch::tensor(resolved, torch::TensorOptions().dtype(at::kLong)).to(x.device());
    at::Tensor picked = both.gather(1, targetIndex.repeat({2}).unsqueeze(1)).squeeze(1).to(at::kDouble);
    endpointGap = picked.slice(0, 0, n) - picked.slice(0, n, 2 * n);
  }

  const at::Tensor diff = x - baseline;
  at::Tensor totalGrad = at::zeros_like(x, x.options().dtype(at::kDouble));
  std::vector<int64_t> stepShape{-1};
  for (int64_t d = 0; d < x.dim(); ++d) stepShape.push_back(1);

  // With a budget, the first pass is one step measured; its peak sets the size of the others.
  const bool measure = control.memoryBudget > 0 && perPass > 1;
  int64_t stepBytes = 0;
  int passes = 0;
  int largestPass = 0;
  for (int start = 0; start < steps;) {
    checkpoint();
    const int count = std::min(measure && passes == 0 ? 1 : perPass, steps - start);
    std::optional<MemoryProbe> probe;
#ifdef TORCHD_WITH_CUDA
    const bool onCuda = measure && passes == 0 && control.cudaDevice >= 0;
    int64_t cudaBefore = 0;
    if (onCuda) {
      // The caching allocator's peak since a reset: other streams on the device can only inflate
      // it, which errs towards smaller chunks.
      c10::cuda::CUDACachingAllocator::resetPeakStats(control.cudaDevice);
      cudaBefore = c10::cuda::CUDACachingAllocator::getDeviceStats(control.cudaDevice).allocated_bytes[0].current;
    }
#endif
    if (measure && passes == 0) probe.emplace();
    auto alphas = torch::tensor(std::vector<double>(rule.alphas.begin() + start, rule.alphas.begin() + start + count),
                                x.options().dtype(at::kDouble))
                      .to(x.scalar_type());
    auto weights = torch::tensor(std::vector<double>(rule.weights.begin() + start, rule.weights.begin() + start + count),
                                 x.options().dtype(at::kDouble));
    // [count, N, ...] scaled copies baseline + alpha * (x - baseline), flattened into one batch.
    at::Tensor scaled = (baseline.unsqueeze(0) + alphas.view(stepShape) * diff.unsqueeze(0))
                            .reshape(repeatBatch(x, count).sizes())
                            .detach()
                            .requires_grad_(true);
    at::Tensor out = scores(forward(argsFor(scaled, count)), count * n);
    at::Tensor picked = out.gather(1, targetIndex.repeat({count}).unsqueeze(1)).sum();
    at::Tensor grad = torch::autograd::grad({picked}, {scaled})[0];
    std::vector<int64_t> perStep{count};
    perStep.insert(perStep.end(), x.sizes().begin(), x.sizes().end());
    totalGrad += (grad.detach().to(at::kDouble).reshape(perStep) * weights.view(stepShape)).sum(0);
    if (probe) {
      stepBytes = probe->peakBytes();
#ifdef TORCHD_WITH_CUDA
      if (onCuda) {
        stepBytes = c10::cuda::CUDACachingAllocator::getDeviceStats(control.cudaDevice).allocated_bytes[0].peak - cudaBefore;
      }
#endif
      probe.reset();
      // Nothing measured (no counting allocator): keep the caller's chunk rather than guess.
      if (stepBytes > 0) {
        int64_t fit = control.memoryBudget / stepBytes;
        perPass = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(fit, perPass)));
      }
    }
    largestPass = std::max(largestPass, count);
    ++passes;
    start += count;
  }

  at::Tensor attributions = (totalGrad * diff.to(at::kDouble));
  IgResult result;
  at::Tensor sums = attributions.reshape({n, -1}).sum(1) - endpointGap;
  at::Tensor sumsCpu = sums.to(at::kCPU).contiguous();
  result.delta.assign(sumsCpu.data_ptr<double>(), sumsCpu.data_ptr<double>() + n);
  result.attributions = tensorNode(attributions.to(x.scalar_type()));
  result.chunk = largestPass;
  result.passes = passes;
  result.stepBytes = stepBytes;
  return result;
}

}  // namespace torchd
