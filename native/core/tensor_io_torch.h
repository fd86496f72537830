// Internal to native/core: conversions between the plain structs of tensor_io.h and LibTorch.
#pragma once
#include <torch/script.h>

#include "tensor_io.h"

namespace torchd {

at::ScalarType toScalarType(DType dtype);
/** Throws EngineError(E_DTYPE) for a scalar type torchd does not carry (complex, quantized, ...). */
DType fromScalarType(at::ScalarType type);

/** Wraps the caller's memory without a copy (CPU). The view must outlive the returned tensor's use. */
at::Tensor wrapView(const TensorView& view);

/**
 * Converts forward's result to an output tree. Tensors are made contiguous on the CPU; a tensor
 * that shares storage with anything else (an input's memory, a parameter, another output) is
 * copied, so the returned buffers own their memory exclusively.
 */
struct OutputOptions {
  /** float16/bfloat16 results come back as float32 (low-precision compute on CUDA). */
  bool widenFloats = false;
  /** Tensors over memory torchd does not own (the caller's input buffers): never hand these out. */
  const std::vector<at::Tensor>* borrowed = nullptr;
};
OutputNode toOutputNode(const c10::IValue& value, const OutputOptions& options = {});
OutputNode tensorNode(const at::Tensor& tensor, const OutputOptions& options = {});

}  // namespace torchd
