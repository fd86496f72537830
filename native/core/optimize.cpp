#include "optimize.h"

#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>

#include <cmath>
#include <sstream>

namespace torchd {

torch::jit::Module optimizedForInference(const torch::jit::Module& module, bool cpu) {
  // freeze() clones the module sharing its tensors, so weights it leaves untouched are not copied;
  // folded convolutions and oneDNN-packed weights are new tensors that replace the originals.
  torch::jit::Module frozen = torch::jit::freeze(module);
  // optimize_for_inference's extra passes are the CPU (oneDNN) rewrites; on CUDA freezing already did
  // the conv/bn folding that applies there.
  torch::jit::Module optimized = cpu ? torch::jit::optimize_for_inference(frozen) : frozen;
  // LibTorch 1.13's rewrites (e.g. the frozen linear transpose) leave the replaced weight constants in the
  // graph, unused: without this the optimised copy would hold the original weights as well (measured:
  // Linear(2048, 2048) 34 MiB instead of 18 MiB).
  torch::jit::EliminateDeadCode(optimized.get_method("forward").graph());
  return optimized;
}

namespace {

std::string compareAt(const c10::IValue& a, const c10::IValue& b, double rtol, const std::string& where) {
  auto at = [&](const std::string& what) { return (where.empty() ? std::string("output") : where) + ": " + what; };
  if (a.isTensor() != b.isTensor()) return at("one result is a tensor, the other not");
  if (a.isTensor()) {
    at::Tensor x = a.toTensor();
    at::Tensor y = b.toTensor();
    if (x.is_mkldnn()) x = x.to_dense();
    if (y.is_mkldnn()) y = y.to_dense();
    if (x.sizes() != y.sizes()) {
      std::ostringstream msg;
      msg << "shape " << x.sizes() << " instead of " << y.sizes();
      return at(msg.str());
    }
    if (x.scalar_type() != y.scalar_type()) {
      return at(std::string("dtype ") + c10::toString(x.scalar_type()) + " instead of " + c10::toString(y.scalar_type()));
    }
    if (x.numel() == 0) return "";
    x = x.cpu();
    y = y.cpu();
    if (!x.is_floating_point() && !x.is_complex()) {
      return x.equal(y) ? "" : at("integer/bool values differ");
    }
    at::Tensor xd = x.to(at::kDouble);
    at::Tensor yd = y.to(at::kDouble);
    double scale = yd.abs().max().item<double>();
    double diff = (xd - yd).abs().max().item<double>();
    bool finiteX = xd.isfinite().all().item<bool>();
    bool finiteY = yd.isfinite().all().item<bool>();
    if (finiteX != finiteY) return at("non-finite values in one result only");
    if (!finiteY) {
      // Compare the finite entries; the non-finite ones must sit at the same places with the same values.
      at::Tensor mask = yd.isfinite();
      if (!xd.isfinite().equal(mask) || !xd.masked_select(mask.logical_not()).equal(yd.masked_select(mask.logical_not()))) {
        return at("non-finite values differ");
      }
      if (mask.any().item<bool>()) {
        scale = yd.masked_select(mask).abs().max().item<double>();
        diff = (xd.masked_select(mask) - yd.masked_select(mask)).abs().max().item<double>();
      } else {
        return "";
      }
    }
    if (diff <= rtol * scale) return "";
    std::ostringstream msg;
    msg << "max |difference| " << diff << " exceeds " << rtol << " × max |value| " << scale;
    return at(msg.str());
  }
  if (a.isTuple() || a.isList()) {
    if (!(b.isTuple() || b.isList())) return at("structure differs");
    std::vector<c10::IValue> xs = a.isTuple() ? a.toTupleRef().elements().vec() : a.toListRef().vec();
    std::vector<c10::IValue> ys = b.isTuple() ? b.toTupleRef().elements().vec() : b.toListRef().vec();
    if (xs.size() != ys.size()) return at("lengths differ");
    for (size_t i = 0; i < xs.size(); ++i) {
      std::string d = compareAt(xs[i], ys[i], rtol, where + "[" + std::to_string(i) + "]");
      if (!d.empty()) return d;
    }
    return "";
  }
  if (a.isGenericDict()) {
    if (!b.isGenericDict()) return at("structure differs");
    auto x = a.toGenericDict();
    auto y = b.toGenericDict();
    if (x.size() != y.size()) return at("dict sizes differ");
    for (const auto& entry : y) {
      auto found = x.find(entry.key());
      if (found == x.end()) return at("a key is missing");
      std::string key = entry.key().isString() ? entry.key().toStringRef() : entry.key().tagKind();
      std::string d = compareAt(found->value(), entry.value(), rtol, where + "[" + key + "]");
      if (!d.empty()) return d;
    }
    return "";
  }
  if (a.isDouble() && b.isDouble()) {
    double x = a.toDouble(), y = b.toDouble();
    return std::abs(x - y) <= rtol * std::abs(y) || x == y ? "" : at("scalar values differ");
  }
  // Ints, bools, strings, None: the same value or not.
  return a == b ? "" : at("values differ");
}

}  // namespace

std::string compareOutputs(const c10::IValue& candidate, const c10::IValue& reference, double rtol) {
  return compareAt(candidate, reference, rtol, "");
}

}  // namespace torchd
