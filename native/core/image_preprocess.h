// Native image preprocessing for image_classifier: JPEG (libjpeg-turbo) and PNG (libspng) decode, EXIF
// orientation, Pillow's antialiased bilinear resize (torchvision Resize on PIL images), CenterCrop,
// ToTensor + Normalize, HWC → CHW. Bit-identical to the JS path (src/handlers/image-preprocess.ts with
// resample.ts); anything that path would treat differently (other formats, CMYK, colour-managed or
// 16-bit-with-gamma PNGs, warnings, corrupt data, oversized images) is declined, not approximated, so the
// caller falls back to that path and its exact messages and 400s.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace torchd {

struct ImageSpec {
  /** 1 (Pillow's convert('L')) or 3 (RGB). */
  int channels = 3;
  /** Resize(image_size): the shorter side becomes this; 0 = no resize. */
  int imageSize = 0;
  /** CenterCrop(crop_size); 0 = no crop. */
  int cropSize = 0;
  std::vector<float> mean;
  std::vector<float> std;
  /** Decompression-bomb limits, checked on the header before decoding (larger images are declined). */
  int64_t maxSide = 10000;
  int64_t maxPixels = 100000000;
  /** Sources whose shorter side exceeds preshrink × imageSize are declined (the JS path pre-shrinks them). */
  int preshrink = 4;
  /**
   * JPEG only, opt-in per model (`fast_decode`): decode at the smallest libjpeg-turbo DCT scale (1/2, 1/4,
   * 1/8) whose shorter side is still ≥ imageSize, then the same resize. Not bit-identical to the reference; cheaper
   * for photos well above the target, and it lets sources above preshrink × imageSize be handled here.
   */
  bool fastDecode = false;
};

struct PreprocessedImage {
  /** false: declined (see the header), `reason` says why; the caller uses the general path. */
  bool handled = false;
  std::string reason;
  /** float32 [1, C, H, W], row-major. */
  std::vector<float> data;
  std::vector<int64_t> shape;
};

/** Never throws for bad input (declines instead); throws std::bad_alloc only. */
PreprocessedImage preprocessImage(const uint8_t* bytes, size_t length, const ImageSpec& spec);

/** Interleaved uint8 pixels. */
struct Pixels {
  std::vector<uint8_t> data;
  int width = 0;
  int height = 0;
  int channels = 0;
};

}  // namespace torchd
