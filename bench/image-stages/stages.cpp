// Per-stage timing of the native image preprocessing (bench/NOTES.md §30): decode, horizontal and vertical
// resize passes, and the crop + normalise + CHW step, for one image and one Resize/CenterCrop config.
// It includes image_preprocess.cpp itself so it times the very functions the addon runs (they sit in an
// anonymous namespace); build and run with bench/image-stages/run.sh. Not a test: it prints figures only.
#include "../../native/core/image_preprocess.cpp"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>

using Clock = std::chrono::steady_clock;

namespace {

template <typename F>
double p50ms(int iters, F&& f) {
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    auto a = Clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(Clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: stages IMAGE.jpg [image_size=256] [crop=224] [iters=200]\n");
    return 2;
  }
  std::ifstream f(argv[1], std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  torchd::ImageSpec spec;
  spec.imageSize = argc > 2 ? std::atoi(argv[2]) : 256;
  spec.cropSize = argc > 3 ? std::atoi(argv[3]) : 224;
  int iters = argc > 4 ? std::atoi(argv[4]) : 200;
  spec.mean = {0.485f, 0.456f, 0.406f};
  spec.std = {0.229f, 0.224f, 0.225f};
  using namespace torchd;

  Decode d = decodeJpeg(bytes.data(), bytes.size(), spec, false);
  if (!d.declined.empty()) {
    std::fprintf(stderr, "declined: %s\n", d.declined.c_str());
    return 1;
  }
  const Pixels& img = d.pixels;
  Geometry g = geometry(img.width, img.height, spec);
  ResizePlan plan = planResize(img, g);
  std::vector<uint8_t> mid(static_cast<size_t>(plan.rows) * plan.cols * 3);
  std::vector<float> out(static_cast<size_t>(3) * g.cropW * g.cropH);
  Normaliser norm(spec, 3);

  // Each decode hands its buffer back, as preprocessImage does, so the timing has the server's reuse.
  auto decodeOnce = [&](const ImageSpec& s) {
    Decode x = decodeJpeg(bytes.data(), bytes.size(), s, false);
    returnScratch(tPixelScratch, std::move(x.pixels.data));
  };
  double tDecode = p50ms(iters, [&] { decodeOnce(spec); });
  double tH = p50ms(iters, [&] { horizontal(img, plan, mid.data()); });
  // The portable loop horizontal() uses where SSE4.1 is missing (§42), and whether it gives the same bytes.
  double tHScalar = -1, tHSse41 = -1;
  bool hSame = true;
  if (img.channels == 3 && plan.needH) {
    std::vector<uint8_t> scalar(mid.size()), sse41(mid.size());
    tHScalar = p50ms(iters, [&] { horizontalPass<3>(img.data.data(), img.width, plan, scalar.data()); });
    if (haveSse41()) {
      tHSse41 = p50ms(iters, [&] { horizontalPassRgbSse41(img.data.data(), img.width, img.data.size(), plan, sse41.data()); });
    } else {
      sse41 = scalar;
    }
    horizontal(img, plan, mid.data());
    hSame = scalar == mid && sse41 == mid;
  }
  double tV = p50ms(iters, [&] { verticalToChw(mid.data(), plan, g, norm, out.data()); });
  double tFast = -1;
  if (spec.imageSize > 0) {
    ImageSpec fast = spec;
    fast.fastDecode = true;
    tFast = p50ms(iters, [&] { decodeOnce(fast); });
  }
  double tAll = p50ms(iters, [&] { preprocessImage(bytes.data(), bytes.size(), spec); });
  ImageSpec fast = spec;
  fast.fastDecode = true;
  double tAllFast = p50ms(iters, [&] { preprocessImage(bytes.data(), bytes.size(), fast); });
  std::printf(
      "{\"image\":\"%s\",\"width\":%d,\"height\":%d,\"resize\":[%d,%d],\"crop\":[%d,%d],\"iters\":%d,"
      "\"p50_ms\":{\"decode\":%.3f,\"resize_h\":%.3f,\"resize_h_scalar\":%.3f,\"resize_h_sse41\":%.3f,\"resize_v_normalise_chw\":%.3f,\"total\":%.3f,"
      "\"decode_fast\":%.3f,\"total_fast\":%.3f},\"resize_h_same_bytes\":%s}\n",
      argv[1], img.width, img.height, g.resizeW, g.resizeH, g.cropW, g.cropH, iters, tDecode, tH, tHScalar, tHSse41, tV, tAll,
      tFast, tAllFast, hSame ? "true" : "false");
  return hSame ? 0 : 1;
}
