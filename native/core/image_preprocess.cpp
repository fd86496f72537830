#include "image_preprocess.h"

#include <spng.h>
#include <turbojpeg.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>  // jpeglib.h needs FILE
#include <cstring>
#include <memory>

#include <jpeglib.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TORCHD_RESIZE_SSE41 1
#define TORCHD_VERTICAL_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TORCHD_VERTICAL_CLONES
#endif

namespace torchd {

namespace {

// ---------------------------------------------------------------- Pillow's resampling (Resample.c)

// Pillow's 8-bit arithmetic: 22-bit fixed-point weights and int32 accumulators. Bilinear weights are
// non-negative and sum to ≈ 2^22, so a sum of 255 × weights stays below 2^31: int32 gives exactly the
// int64 result, and lets the compiler work on 4–8 lanes at a time.
constexpr int kPrecisionBits = 32 - 8 - 2;
constexpr int32_t kOne = int32_t{1} << kPrecisionBits;
constexpr int32_t kHalf = int32_t{1} << (kPrecisionBits - 1);

struct Coefficients {
  std::vector<int> start;
  std::vector<int> count;
  std::vector<int32_t> weights;  // ksize per output index, 22-bit fixed point
  int ksize = 0;
};

/** precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter, in resample.ts's (Pillow's) double arithmetic. */
Coefficients coefficients(int inSize, int outSize) {
  Coefficients c;
  double scale = static_cast<double>(inSize) / outSize;
  double filterscale = std::max(scale, 1.0);
  double support = filterscale;  // bilinear support 1.0 × filterscale
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.start.resize(outSize);
  c.count.resize(outSize);
  c.weights.assign(static_cast<size_t>(outSize) * c.ksize, 0);
  std::vector<double> k(c.ksize);
  for (int xx = 0; xx < outSize; ++xx) {
    double center = (xx + 0.5) * scale;
    double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(std::trunc(center - support + 0.5));
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(std::trunc(center + support + 0.5));
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    double ww = 0;
    for (int x = 0; x < xmax; ++x) {
      double t = std::abs((x + xmin - center + 0.5) * ss);
      double w = t < 1 ? 1 - t : 0;
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; ++x) {
      double w = ww != 0 ? k[x] / ww : k[x];
      c.weights[static_cast<size_t>(xx) * c.ksize + x] =
          static_cast<int32_t>(w < 0 ? std::trunc(-0.5 + w * kOne) : std::trunc(0.5 + w * kOne));
    }
    c.start[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t ss) {
  int32_t v = ss >> kPrecisionBits;  // floor, as Pillow's arithmetic shift
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

/** Resize(image_size) then CenterCrop(crop_size) of a w × h image, as torchvision computes them. */
struct Geometry {
  int resizeW = 0, resizeH = 0;  // the resized image
  int cropW = 0, cropH = 0;      // the output window
  int left = 0, top = 0;         // its offset in the resized image (negative: zero padding)
};

/**
 * Only the part of the resized image that the centre crop keeps is computed: output columns [x0, x1) and
 * rows [y0, y1) of the resize, from source rows [rowFirst, rowFirst + rows). Pillow resizes the whole image
 * and crops after; each output pixel depends only on its own coefficients, so the kept pixels are the same.
 */
struct ResizePlan {
  int channels = 3;
  bool needH = false, needV = false;
  Coefficients hc, vc;
  int x0 = 0, x1 = 0, y0 = 0, y1 = 0;
  int rowFirst = 0, rows = 0, cols = 0;
  bool empty() const { return x1 <= x0 || y1 <= y0; }
};

ResizePlan planResize(const Pixels& src, const Geometry& g) {
  ResizePlan p;
  p.channels = src.channels;
  p.x0 = std::max(g.left, 0);
  p.x1 = std::min(g.left + g.cropW, g.resizeW);
  p.y0 = std::max(g.top, 0);
  p.y1 = std::min(g.top + g.cropH, g.resizeH);
  if (p.empty()) return p;
  p.needH = g.resizeW != src.width;
  p.needV = g.resizeH != src.height;
  if (p.needH) p.hc = coefficients(src.width, g.resizeW);
  if (p.needV) p.vc = coefficients(src.height, g.resizeH);
  p.rowFirst = p.needV ? p.vc.start[p.y0] : p.y0;
  int rowLast = p.y1;
  if (p.needV) {
    rowLast = 0;
    for (int y = p.y0; y < p.y1; ++y) rowLast = std::max(rowLast, p.vc.start[y] + p.vc.count[y]);
  }
  p.cols = p.x1 - p.x0;
  p.rows = rowLast - p.rowFirst;
  return p;
}

/** One output pixel of the horizontal pass: `n` taps of C interleaved channels from `px`, weights `w`. */
template <int C>
inline void resamplePixel(const uint8_t* px, const int32_t* w, int n, uint8_t* m) {
  int32_t acc[C];
  for (int c = 0; c < C; ++c) acc[c] = kHalf;
  for (int x = 0; x < n; ++x, px += C) {
    for (int c = 0; c < C; ++c) acc[c] += px[c] * w[x];
  }
  for (int c = 0; c < C; ++c) m[c] = clip8(acc[c]);
}

template <int C>
void horizontalPass(const uint8_t* src, int inW, const ResizePlan& p, uint8_t* mid) {
  const Coefficients& hc = p.hc;
  for (int r = 0; r < p.rows; ++r) {
    const uint8_t* inRow = src + static_cast<size_t>(p.rowFirst + r) * inW * C;
    uint8_t* m = mid + static_cast<size_t>(r) * p.cols * C;
    for (int xx = p.x0; xx < p.x1; ++xx, m += C) {
      resamplePixel<C>(inRow + static_cast<size_t>(hc.start[xx]) * C, &hc.weights[static_cast<size_t>(xx) * hc.ksize],
                       hc.count[xx], m);
    }
  }
}

#ifdef TORCHD_RESIZE_SSE41
/**
 * horizontalPass<3> with the three channels of a pixel as the lanes of one vector (SSE4.1's pmovzxbd and
 * pmulld; the fourth lane carries the next pixel's first byte and is dropped): one multiply-add per tap
 * instead of three. The same int32 products and sums in a different order, so the same bytes; the
 * saturating packs clamp exactly as clip8 (after the shift |v| < 2^10, so only the final [0, 255] clamp
 * acts). A tap whose 4-byte load would pass the end of the source falls back to the scalar loop.
 */
__attribute__((target("sse4.1"))) void horizontalPassRgbSse41(const uint8_t* src, int inW, size_t srcBytes,
                                                              const ResizePlan& p, uint8_t* mid) {
  const Coefficients& hc = p.hc;
  const uint8_t* end = src + srcBytes;
  const __m128i half = _mm_set1_epi32(kHalf);
  for (int r = 0; r < p.rows; ++r) {
    const uint8_t* inRow = src + static_cast<size_t>(p.rowFirst + r) * inW * 3;
    uint8_t* m = mid + static_cast<size_t>(r) * p.cols * 3;
    for (int xx = p.x0; xx < p.x1; ++xx, m += 3) {
      const int n = hc.count[xx];
      const int32_t* w = &hc.weights[static_cast<size_t>(xx) * hc.ksize];
      const uint8_t* px = inRow + static_cast<size_t>(hc.start[xx]) * 3;
      if (px + static_cast<size_t>(n) * 3 + 1 > end) {
        resamplePixel<3>(px, w, n, m);
        continue;
      }
      __m128i acc = half;
      for (int x = 0; x < n; ++x, px += 3) {
        int32_t four;
        std::memcpy(&four, px, 4);
        const __m128i pixel = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(four));
        acc = _mm_add_epi32(acc, _mm_mullo_epi32(pixel, _mm_set1_epi32(w[x])));
      }
      const __m128i v = _mm_srai_epi32(acc, kPrecisionBits);
      const __m128i bytes = _mm_packus_epi16(_mm_packs_epi32(v, v), _mm_setzero_si128());
      const int32_t out = _mm_cvtsi128_si32(bytes);
      std::memcpy(m, &out, 3);
    }
  }
}

bool haveSse41() {
  static const bool have = __builtin_cpu_supports("sse4.1");
  return have;
}
#endif

/**
 * The horizontal pass into a uint8 intermediate of p.rows × p.cols pixels, as Pillow does (the rounding
 * between passes is part of the result); a plain copy of the kept columns when the width does not change.
 */
void horizontal(const Pixels& src, const ResizePlan& p, uint8_t* mid) {
  const int C = p.channels;
  if (!p.needH) {
    for (int r = 0; r < p.rows; ++r) {
      std::memcpy(mid + static_cast<size_t>(r) * p.cols * C,
                  &src.data[(static_cast<size_t>(p.rowFirst + r) * src.width + p.x0) * C], static_cast<size_t>(p.cols) * C);
    }
  } else if (C == 3) {
#ifdef TORCHD_RESIZE_SSE41
    if (haveSse41()) {
      horizontalPassRgbSse41(src.data.data(), src.width, src.data.size(), p, mid);
      return;
    }
#endif
    horizontalPass<3>(src.data.data(), src.width, p, mid);
  } else {
    horizontalPass<1>(src.data.data(), src.width, p, mid);
  }
}

/**
 * ToTensor + Normalize as a table per channel: the JS path's arithmetic, fround(v / 255) then
 * (x − mean) / std in double rounded once to float32, computed for each of the 256 levels once per image.
 */
struct Normaliser {
  float lut[3][256];
  Normaliser(const ImageSpec& spec, int channels) {
    for (int k = 0; k < channels; ++k) {
      double mean = spec.mean[k];
      double sd = spec.std[k];
      for (int v = 0; v < 256; ++v) {
        float x = static_cast<float>(v / 255.0);
        lut[k][v] = static_cast<float>((static_cast<double>(x) - mean) / sd);
      }
    }
  }
};

/**
 * The vertical pass fused with normalisation and HWC → CHW: each kept output row is accumulated over whole
 * intermediate rows (a contiguous multiply-add the compiler vectorises), clipped, looked up and written
 * straight into the [C, cropH, cropW] planes. Pixels of the window outside the resized image (crop larger
 * than the image) are left as they are: the caller fills them with the normalised 0.
 */
TORCHD_VERTICAL_CLONES void verticalToChw(const uint8_t* mid, const ResizePlan& p, const Geometry& g, const Normaliser& norm, float* out) {
  const int C = p.channels;
  const size_t stride = static_cast<size_t>(p.cols) * C;
  const size_t plane = static_cast<size_t>(g.cropW) * g.cropH;
  std::vector<int32_t> acc(stride);
  std::vector<uint8_t> row(stride);
  for (int yy = p.y0; yy < p.y1; ++yy) {
    const uint8_t* line;
    if (p.needV) {
      const int n = p.vc.count[yy];
      const int32_t* w = &p.vc.weights[static_cast<size_t>(yy) * p.vc.ksize];
      const uint8_t* first = mid + static_cast<size_t>(p.vc.start[yy] - p.rowFirst) * stride;
      int32_t* a = acc.data();
      std::fill(acc.begin(), acc.end(), kHalf);
      for (int y = 0; y < n; ++y) {
        const uint8_t* src = first + y * stride;
        const int32_t wy = w[y];
        for (size_t i = 0; i < stride; ++i) a[i] += src[i] * wy;
      }
      uint8_t* r = row.data();
      for (size_t i = 0; i < stride; ++i) r[i] = clip8(a[i]);
      line = r;
    } else {
      line = mid + static_cast<size_t>(yy - p.rowFirst) * stride;
    }
    const size_t at = static_cast<size_t>(yy - g.top) * g.cropW + (p.x0 - g.left);
    for (int k = 0; k < C; ++k) {
      const float* lut = norm.lut[k];
      float* o = out + k * plane + at;
      const uint8_t* s = line + k;
      for (int xi = 0; xi < p.cols; ++xi) o[xi] = lut[s[static_cast<size_t>(xi) * C]];
    }
  }
}

// ---------------------------------------------------------------- geometry (torchvision Resize / CenterCrop)

/** Python's round() (half to even), as torchvision's CenterCrop uses for its offsets. */
int roundHalfEven(double x) {
  double f = std::floor(x);
  double d = x - f;
  if (d > 0.5) return static_cast<int>(f) + 1;
  if (d < 0.5) return static_cast<int>(f);
  return static_cast<int64_t>(f) % 2 == 0 ? static_cast<int>(f) : static_cast<int>(f) + 1;
}

void resizedSize(int w, int h, int size, int& outW, int& outH) {
  if (w <= h) {
    outW = size;
    outH = static_cast<int>(static_cast<int64_t>(size) * h / w);
  } else {
    outW = static_cast<int>(static_cast<int64_t>(size) * w / h);
    outH = size;
  }
}

int cropOffset(int size, int crop) {
  return crop > size ? -((crop - size) / 2) : roundHalfEven((size - crop) / 2.0);
}

Geometry geometry(int w, int h, const ImageSpec& spec) {
  Geometry g;
  g.resizeW = w;
  g.resizeH = h;
  if (spec.imageSize > 0) resizedSize(w, h, spec.imageSize, g.resizeW, g.resizeH);
  g.cropW = spec.cropSize > 0 ? spec.cropSize : g.resizeW;
  g.cropH = spec.cropSize > 0 ? spec.cropSize : g.resizeH;
  g.left = spec.cropSize > 0 ? cropOffset(g.resizeW, g.cropW) : 0;
  g.top = spec.cropSize > 0 ? cropOffset(g.resizeH, g.cropH) : 0;
  return g;
}

/**
 * The source columns [first, end) that Resize + CenterCrop read from a w × h image (no orientation change): the
 * horizontal coefficients' support of the kept output columns. [0, w) when everything is read.
 */
std::pair<int, int> neededColumns(int w, int h, const ImageSpec& spec) {
  Pixels dims;  // the plan needs only the size
  dims.width = w;
  dims.height = h;
  dims.channels = 1;
  const ResizePlan p = planResize(dims, geometry(w, h, spec));
  if (p.empty()) return {0, w};
  if (!p.needH) return {p.x0, p.x1};
  int first = w, end = 0;
  for (int x = p.x0; x < p.x1; ++x) {
    first = std::min(first, p.hc.start[x]);
    end = std::max(end, p.hc.start[x] + p.hc.count[x]);
  }
  return {first, end};
}

// ---------------------------------------------------------------- EXIF orientation (JPEG APP1)

uint32_t read16(const uint8_t* p, bool little) { return little ? p[0] | (p[1] << 8) : (p[0] << 8) | p[1]; }
uint32_t read32(const uint8_t* p, bool little) {
  return little ? p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24)
                : (static_cast<uint32_t>(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
}

/**
 * The EXIF orientation (1–8) of a JPEG from its first Exif APP1 segment; 1 when there is none. -1 when an
 * Exif segment is there but malformed (declined: libexif's reading of it is not ours to guess).
 */
int jpegOrientation(const uint8_t* b, size_t n) {
  size_t pos = 2;  // after SOI
  while (pos + 4 <= n) {
    if (b[pos] != 0xFF) return 1;
    uint8_t marker = b[pos + 1];
    if (marker == 0xFF) {
      ++pos;
      continue;
    }
    if (marker == 0xDA || marker == 0xD9) return 1;  // start of scan / end: no Exif before the image data
    size_t len = (static_cast<size_t>(b[pos + 2]) << 8) | b[pos + 3];
    if (len < 2 || pos + 2 + len > n) return -1;
    const uint8_t* seg = b + pos + 4;
    size_t segLen = len - 2;
    if (marker == 0xE1 && segLen >= 6 && std::memcmp(seg, "Exif\0\0", 6) == 0) {
      const uint8_t* tiff = seg + 6;
      size_t tiffLen = segLen - 6;
      if (tiffLen < 8) return -1;
      bool little;
      if (tiff[0] == 'I' && tiff[1] == 'I') little = true;
      else if (tiff[0] == 'M' && tiff[1] == 'M') little = false;
      else return -1;
      if (read16(tiff + 2, little) != 42) return -1;
      uint32_t ifd = read32(tiff + 4, little);
      if (ifd + 2 > tiffLen) return -1;
      uint32_t entries = read16(tiff + ifd, little);
      if (ifd + 2 + static_cast<size_t>(entries) * 12 > tiffLen) return -1;
      for (uint32_t i = 0; i < entries; ++i) {
        const uint8_t* e = tiff + ifd + 2 + i * 12;
        if (read16(e, little) != 0x0112) continue;
        if (read16(e + 2, little) != 3 || read32(e + 4, little) != 1) return -1;  // SHORT, count 1
        uint32_t v = read16(e + 8, little);
        return v >= 1 && v <= 8 ? static_cast<int>(v) : -1;
      }
      return 1;
    }
    pos += 2 + len;
  }
  return 1;
}

/** Applies an EXIF orientation (sharp's rotate() without arguments): the displayed image. */
Pixels orient(Pixels in, int orientation) {
  if (orientation == 1) return in;
  bool swap = orientation >= 5;
  Pixels out;
  out.channels = in.channels;
  out.width = swap ? in.height : in.width;
  out.height = swap ? in.width : in.height;
  out.data.resize(in.data.size());
  const int W = in.width, H = in.height, C = in.channels;
  for (int oy = 0; oy < out.height; ++oy) {
    for (int ox = 0; ox < out.width; ++ox) {
      int sx, sy;
      switch (orientation) {
        case 2: sx = W - 1 - ox; sy = oy; break;
        case 3: sx = W - 1 - ox; sy = H - 1 - oy; break;
        case 4: sx = ox; sy = H - 1 - oy; break;
        case 5: sx = oy; sy = ox; break;
        case 6: sx = oy; sy = H - 1 - ox; break;
        case 7: sx = W - 1 - oy; sy = H - 1 - ox; break;
        default: sx = W - 1 - oy; sy = ox; break;  // 8
      }
      std::memcpy(&out.data[(static_cast<size_t>(oy) * out.width + ox) * C], &in.data[(static_cast<size_t>(sy) * W + sx) * C], C);
    }
  }
  return out;
}

// ---------------------------------------------------------------- per-thread scratch buffers

// The decoded pixels and the resize intermediate are reused by the next image on the same thread: fresh
// buffers of this size are mmap'd by malloc and page-faulted on every image (≈ 0.3 ms of a 640×427 JPEG's
// ≈ 2.9 ms, bench/NOTES.md §30). Buffers above kScratchKeep are released, so one huge image does not pin
// its memory on the image threads.
constexpr size_t kScratchKeep = size_t{16} << 20;
thread_local std::vector<uint8_t> tPixelScratch;
thread_local std::vector<uint8_t> tMidScratch;

std::vector<uint8_t> takeScratch(std::vector<uint8_t>& scratch, size_t size) {
  std::vector<uint8_t> v = std::move(scratch);
  scratch = {};
  v.resize(size);
  return v;
}

void returnScratch(std::vector<uint8_t>& scratch, std::vector<uint8_t>&& v) {
  if (v.capacity() <= kScratchKeep && v.capacity() > scratch.capacity()) scratch = std::move(v);
}

// ---------------------------------------------------------------- decoders

struct Decode {
  Pixels pixels;
  std::string declined;  // non-empty: not handled
  int orientation = 1;
};

Decode decline(std::string why) {
  Decode d;
  d.declined = std::move(why);
  return d;
}

bool withinLimits(int64_t w, int64_t h, const ImageSpec& spec) {
  return w > 0 && h > 0 && w <= spec.maxSide && h <= spec.maxSide && w * h <= spec.maxPixels;
}

// libjpeg's own API for a decode of some columns only (jpeg_crop_scanline: TurboJPEG 2.1 has no crop). Errors and
// warnings leave through longjmp, as in TurboJPEG with TJFLAG_STOPONWARNING; nothing between setjmp and the
// libjpeg calls owns a destructor.
struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void jpegFail(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  std::longjmp(e->jump, 1);
}

void jpegMessage(j_common_ptr cinfo, int level) {
  if (level < 0) jpegFail(cinfo);  // a warning (corrupt or truncated data): fatal, as TJFLAG_STOPONWARNING
}

/**
 * Decodes JPEG rows whole but only the columns [first, end) (widened by libjpeg to its iMCU boundaries) into a
 * w × h × components buffer at their own positions; the other columns are left as they are. ISLOW IDCT and fancy
 * upsampling, as tjDecompress2's defaults. The entropy decoding still reads every block, so corrupt or truncated
 * data fails here exactly as a full decode does. Returns false with `why` on an error or warning.
 */
bool decodeJpegColumns(const uint8_t* b, size_t n, bool gray, int w, int first, int end, uint8_t* out, std::string& why) {
  jpeg_decompress_struct cinfo;
  JpegError err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpegFail;
  err.mgr.emit_message = jpegMessage;
  err.message[0] = 0;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    why = err.message;
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, b, static_cast<unsigned long>(n));
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = gray ? JCS_GRAYSCALE : JCS_EXT_RGB;
  cinfo.dct_method = JDCT_ISLOW;
  cinfo.do_fancy_upsampling = TRUE;
  jpeg_start_decompress(&cinfo);
  JDIMENSION xoffset = static_cast<JDIMENSION>(first);
  JDIMENSION width = static_cast<JDIMENSION>(end - first);
  jpeg_crop_scanline(&cinfo, &xoffset, &width);
  const size_t components = gray ? 1 : 3;
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out + (static_cast<size_t>(cinfo.output_scanline) * w + xoffset) * components;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

/**
 * Margin, in source pixels, kept decoded on each side of the columns the resize reads: libjpeg's upsampler
 * replicates the edge samples of a cropped region, so only columns well inside it equal a full decode's.
 */
constexpr int kCropMargin = 16;

Decode decodeJpeg(const uint8_t* b, size_t n, const ImageSpec& spec, bool wantGray) {
  std::unique_ptr<void, int (*)(tjhandle)> tj(tjInitDecompress(), tjDestroy);
  if (!tj) return decline("turbojpeg init failed");
  int w = 0, h = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj.get(), b, static_cast<unsigned long>(n), &w, &h, &subsamp, &colorspace) != 0) {
    return decline("unreadable JPEG header");
  }
  if (!withinLimits(w, h, spec)) return decline("outside the pixel limits");
  // CMYK/YCCK go the general way (libvips converts them; that is its business, as today).
  if (colorspace != TJCS_YCbCr && colorspace != TJCS_RGB && colorspace != TJCS_GRAY) return decline("CMYK/YCCK JPEG");
  bool grayJpeg = colorspace == TJCS_GRAY;
  if (grayJpeg && !wantGray) return decline("gray JPEG for a 3-channel model");
  Decode d;
  d.orientation = jpegOrientation(b, n);
  if (d.orientation < 0) return decline("malformed EXIF");
  // fast_decode: the IDCT itself produces the reduced image, skipping most of the IDCT, upsampling and
  // colour conversion work of a full-size decode. Off by default: not bit-identical. Only 1/2, 1/4 and 1/8:
  // libjpeg-turbo has SIMD for those reduced IDCTs, while 7/8 … 3/8 decode slower than the full size here
  // (bench/NOTES.md §30).
  if (spec.fastDecode && spec.imageSize > 0) {
    int count = 0;
    const tjscalingfactor* factors = tjGetScalingFactors(&count);
    int shortSide = std::min(w, h);
    int bestW = w, bestH = h;
    for (int i = 0; factors && i < count; ++i) {
      const tjscalingfactor& f = factors[i];
      if (f.num != 1 || f.denom < 2 || TJSCALED(shortSide, f) < spec.imageSize) continue;
      if (TJSCALED(w, f) < bestW) {
        bestW = TJSCALED(w, f);
        bestH = TJSCALED(h, f);
      }
    }
    w = bestW;
    h = bestH;
  }
  Pixels& p = d.pixels;
  p.width = w;
  p.height = h;
  p.channels = grayJpeg ? 1 : 3;
  p.data = takeScratch(tPixelScratch, static_cast<size_t>(w) * h * p.channels);
  // Only the columns the centre crop's resize reads (≈ 60 % of a 3:2 photo's at 256/224): the IDCT, upsampling and
  // colour conversion of the others are skipped (bench/NOTES.md §38). Not for a rotated image (its columns are
  // the source's rows), a reduced-scale decode, or a colour JPEG turned grey (that conversion reads every pixel).
  if (d.orientation == 1 && !spec.fastDecode && (grayJpeg || !wantGray) && spec.cropSize > 0) {
    auto [first, end] = neededColumns(w, h, spec);
    first = std::max(0, first - kCropMargin);
    end = std::min(w, end + kCropMargin);
    if (end - first < w * 9 / 10) {
      std::string why;
      if (!decodeJpegColumns(b, n, grayJpeg, w, first, end, p.data.data(), why)) return decline("JPEG decode: " + why);
      return d;
    }
  }
  // ISLOW IDCT and fancy upsampling (turbojpeg's defaults) are what libvips and PIL decode with; a warning
  // (truncated data, corrupt segments) stops the decode so the general path reports it exactly as today.
  if (tjDecompress2(tj.get(), b, static_cast<unsigned long>(n), p.data.data(), w, 0, h, grayJpeg ? TJPF_GRAY : TJPF_RGB,
                    TJFLAG_STOPONWARNING) != 0) {
    return decline(std::string("JPEG decode: ") + tjGetErrorStr2(tj.get()));
  }
  return d;
}

Decode decodePng(const uint8_t* b, size_t n, const ImageSpec& spec, bool wantGray) {
  std::unique_ptr<spng_ctx, void (*)(spng_ctx*)> ctx(spng_ctx_new(0), spng_ctx_free);
  if (!ctx) return decline("spng init failed");
  // Any checksum error is an error here: the general path decides what a damaged file means.
  spng_set_crc_action(ctx.get(), SPNG_CRC_ERROR, SPNG_CRC_ERROR);
  if (spng_set_png_buffer(ctx.get(), b, n) != 0) return decline("spng buffer");
  spng_ihdr ihdr{};
  if (spng_get_ihdr(ctx.get(), &ihdr) != 0) return decline("unreadable PNG header");
  if (!withinLimits(ihdr.width, ihdr.height, spec)) return decline("outside the pixel limits");
  int samples;
  switch (ihdr.color_type) {
    case SPNG_COLOR_TYPE_GRAYSCALE: samples = 1; break;
    case SPNG_COLOR_TYPE_GRAYSCALE_ALPHA: samples = 2; break;
    case SPNG_COLOR_TYPE_TRUECOLOR: samples = 3; break;
    case SPNG_COLOR_TYPE_TRUECOLOR_ALPHA: samples = 4; break;
    case SPNG_COLOR_TYPE_INDEXED: samples = 0; break;
    default: return decline("unknown PNG colour type");
  }
  bool grayPng = samples == 1 || samples == 2;
  if (grayPng && !wantGray) return decline("gray PNG for a 3-channel model");
  if (samples != 0 && ihdr.bit_depth != 8 && ihdr.bit_depth != 16) return decline("PNG bit depth below 8");
  // libvips' grey16 → b-w conversion is not the high byte (measured on png_gray16.png); RGB16's is.
  if (grayPng && ihdr.bit_depth == 16) return decline("16-bit gray PNG");
  int fmt = samples == 0 ? SPNG_FMT_RGB8 : SPNG_FMT_PNG;
  size_t size = 0;
  if (spng_decoded_image_size(ctx.get(), fmt, &size) != 0) return decline("spng size");
  std::vector<uint8_t> raw(size);
  if (spng_decode_image(ctx.get(), raw.data(), size, fmt, 0) != 0) return decline("PNG decode failed");
  // Chunks that make libvips' result differ from the raw samples (gamma, chromaticities, significant bits,
  // EXIF orientation) — possibly after the image data, so asked after decoding.
  double gamma;
  spng_chrm chrm;
  spng_sbit sbit;
  spng_exif exif;
  if (spng_get_gama(ctx.get(), &gamma) == 0 || spng_get_chrm(ctx.get(), &chrm) == 0 ||
      spng_get_sbit(ctx.get(), &sbit) == 0 || spng_get_exif(ctx.get(), &exif) == 0) {
    return decline("PNG with gAMA/cHRM/sBIT/eXIf");
  }
  Decode d;
  Pixels& p = d.pixels;
  p.width = static_cast<int>(ihdr.width);
  p.height = static_cast<int>(ihdr.height);
  size_t count = static_cast<size_t>(p.width) * p.height;
  if (samples == 0) {
    p.channels = 3;
    p.data = std::move(raw);
    return d;
  }
  p.channels = grayPng ? 1 : 3;
  p.data.resize(count * p.channels);
  // Alpha is dropped (sharp's removeAlpha); 16-bit samples keep their high byte (libvips' 16 → 8-bit cast).
  if (ihdr.bit_depth == 8) {
    for (size_t i = 0; i < count; ++i) {
      for (int c = 0; c < p.channels; ++c) p.data[i * p.channels + c] = raw[i * samples + c];
    }
  } else {
    const uint16_t* r16 = reinterpret_cast<const uint16_t*>(raw.data());  // host-endian (SPNG_FMT_PNG)
    for (size_t i = 0; i < count; ++i) {
      for (int c = 0; c < p.channels; ++c) p.data[i * p.channels + c] = static_cast<uint8_t>(r16[i * samples + c] >> 8);
    }
  }
  return d;
}

}  // namespace

PreprocessedImage preprocessImage(const uint8_t* bytes, size_t length, const ImageSpec& spec) {
  PreprocessedImage result;
  if (spec.channels != 1 && spec.channels != 3) {
    result.reason = "channels must be 1 or 3";
    return result;
  }
  bool wantGray = spec.channels == 1;
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  Decode d;
  if (length >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) {
    d = decodeJpeg(bytes, length, spec, wantGray);
  } else if (length >= 8 && std::memcmp(bytes, kPng, 8) == 0) {
    d = decodePng(bytes, length, spec, wantGray);
  } else {
    d = decline("not JPEG or PNG");
  }
  if (!d.declined.empty()) {
    result.reason = d.declined;
    return result;
  }
  Pixels img = orient(std::move(d.pixels), d.orientation);
  if (spec.imageSize > 0 && std::min(img.width, img.height) > spec.preshrink * spec.imageSize) {
    result.reason = "large enough to be pre-shrunk by libvips";
    return result;
  }
  // Colour → gray with Pillow's convert('L') integer formula, as the JS path applies to sharp's sRGB output.
  if (wantGray && img.channels == 3) {
    Pixels gray;
    gray.width = img.width;
    gray.height = img.height;
    gray.channels = 1;
    size_t count = static_cast<size_t>(img.width) * img.height;
    gray.data.resize(count);
    for (size_t i = 0; i < count; ++i) {
      const uint8_t* s = &img.data[i * 3];
      gray.data[i] = static_cast<uint8_t>((s[0] * 19595u + s[1] * 38470u + s[2] * 7471u + 0x8000u) >> 16);
    }
    img = std::move(gray);
  }
  const Geometry g = geometry(img.width, img.height, spec);
  const int c = img.channels;
  const size_t plane = static_cast<size_t>(g.cropW) * g.cropH;
  const Normaliser norm(spec, c);
  const ResizePlan plan = planResize(img, g);
  result.data.resize(plane * c);
  // A window reaching outside the resized image (crop larger than it) is zero-padded, as CenterCrop pads.
  if (plan.empty() || plan.cols != g.cropW || plan.y1 - plan.y0 != g.cropH) {
    for (int k = 0; k < c; ++k) std::fill_n(&result.data[k * plane], plane, norm.lut[k][0]);
  }
  if (!plan.empty()) {
    std::vector<uint8_t> mid = takeScratch(tMidScratch, static_cast<size_t>(plan.rows) * plan.cols * c);
    horizontal(img, plan, mid.data());
    verticalToChw(mid.data(), plan, g, norm, result.data.data());
    returnScratch(tMidScratch, std::move(mid));
  }
  returnScratch(tPixelScratch, std::move(img.data));
  const int cw = g.cropW, ch = g.cropH;
  result.shape = {1, c, ch, cw};
  result.handled = true;
  return result;
}

}  // namespace torchd
