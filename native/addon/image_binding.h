// preprocessImage(bytes, spec): native/core/image_preprocess on the addon's own image threads;
// preprocessImageSync(bytes, spec): the same on the calling thread, for small images.
#pragma once
#include <napi.h>

namespace torchd::addon {

/** Adds `preprocessImage` and `preprocessImageSync` to the addon's exports. */
void registerImageFunctions(Napi::Env env, Napi::Object exports);

}  // namespace torchd::addon
