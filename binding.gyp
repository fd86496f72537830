{
  # node-gyp build of the same addon sources CMakeLists.txt builds (the primary build is cmake-js).
  # node-gyp always writes ./build, which cmake-js owns; build this one in a staging folder with
  #   bash native/gyp/build.sh        ->  build/gyp/build/Release/torchd.node
  # LibTorch is found by native/gyp/libtorch.cjs (LIBTORCH, python torch, or libtorch-dev).
  "targets": [
    {
      "target_name": "torchd",
      "sources": [
        "native/addon/addon.cpp",
        "native/addon/convert.cpp",
        "native/addon/image_binding.cpp",
        "native/addon/loop_poll.cpp",
        "native/core/errors.cpp",
        "native/core/cancel.cpp",
        "native/core/memory_probe.cpp",
        "native/core/tensor_io.cpp",
        "native/core/executor.cpp",
        "native/core/quadrature.cpp",
        "native/core/model.cpp",
        "native/core/serving_model.cpp",
        "native/core/optimize.cpp",
        "native/core/image_preprocess.cpp",
        "native/core/integrated_gradients.cpp",
        "native/core/build_info.cpp"
      ],
      "include_dirs": [
        "<!@(node -p \"require('node-addon-api').include\")",
        "native/core",
        "<!@(node native/gyp/libtorch.cjs include)"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_CPP_EXCEPTIONS",
        "<!@(node native/gyp/libtorch.cjs defines)"
      ],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++1y", "-std=gnu++14"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O2", "-Wno-unused-parameter", "-Wno-deprecated-declarations"],
      "ldflags": ["<!@(node native/gyp/libtorch.cjs ldflags)"],
      "libraries": ["<!@(node native/gyp/libtorch.cjs libs)", "<!@(pkg-config --libs libturbojpeg libjpeg spng)"]
    }
  ]
}
