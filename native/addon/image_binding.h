// preprocessImage(bytes, spec): native/core/image_preprocess on the addon's own image threads.
#pragma once
#include <napi.h>

namespace torchd::addon {

/** Adds `preprocessImage` to the addon's exports. */
void registerImageFunctions(Napi::Env env, Napi::Object exports);

}  // namespace torchd::addon
