// JS <-> native/core conversions. Runs on the main thread only.
#pragma once
#include <napi.h>

#include <vector>

#include "errors.h"
#include "tensor_io.h"

namespace torchd::addon {

/** A JS error of the chosen kind with `.code` set. */
Napi::Error makeError(Napi::Env env, const EngineError& error);
Napi::Error makeError(Napi::Env env, ErrorCode code, const std::string& message, ErrorKind kind);

/**
 * Reads `{ data, shape, dtype }` into a view of the typed array's memory (no copy) and keeps the
 * array referenced in `keepAlive` until the call completes. Throws EngineError E_ARGUMENT (not an
 * object / bad shape), E_DTYPE (unknown dtype or typed array kind mismatch), E_SHAPE (element count).
 */
TensorView readTensor(const Napi::Value& value, const std::string& what, std::vector<Napi::ObjectReference>& keepAlive);

/** Output tree → JS; tensors become typed arrays over external ArrayBuffers owning the memory. */
Napi::Value toJs(Napi::Env env, OutputNode& node);

}  // namespace torchd::addon
