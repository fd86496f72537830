// torchd-bench: the bare native loop over native/core's ServingModel (no Node; the same executor
// threads, streams and intra-op threads as the server's model instances), the ceiling torchd's HTTP numbers
// are divided by (see shared/perf.md). Prints one JSON object per batch size.
//
//   torchd-bench --model M.pt --shape 1,3,224,224 --dtype float32 --device cpu --batch 1,2,4,8
//                --warmup 10 --iters 50 [--threads N] [--optimize] [--ig --steps 15 [--chunk C] [--target T]]
//
// --optimize: forward runs the frozen, inference-optimised module as the server does by default (its
// first call checks it against the original); without it the module runs as saved. IG always runs the original.
//
// The first dim of --shape is replaced by each batch size. Inputs are seeded pseudo-random data.
// On CUDA each timed call includes the pinned staging copy, host->device and device->host copies.
#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <vector>

#include "build_info.h"
#include "errors.h"
#include "model.h"
#include "serving_model.h"

namespace {

struct Args {
  std::string model;
  std::vector<int64_t> shape;
  std::string dtype = "float32";
  std::string device = "cpu";
  std::vector<int64_t> batches{1};
  int warmup = 10;
  int iters = 50;
  int threads = 0;
  int workers = 1;
  bool ig = false;
  int steps = 15;
  int chunk = 0;
  int64_t target = 0;
  bool optimize = false;
};

[[noreturn]] void usage(const std::string& problem) {
  std::cerr << "torchd-bench: " << problem << "\n"
            << "usage: torchd-bench --model M.pt --shape 1,3,224,224 [--dtype float32] [--device cpu]\n"
            << "                    [--batch 1,2,4,8] [--warmup 10] [--iters 50] [--threads N] [--workers W] [--optimize]\n"
            << "                    [--ig [--steps 15] [--chunk C] [--target T]]\n";
  std::exit(2);
}

std::vector<int64_t> parseList(const std::string& text, const char* flag) {
  std::vector<int64_t> out;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) {
    try {
      size_t used = 0;
      long long v = std::stoll(part, &used);
      if (used != part.size() || v < 1) throw std::invalid_argument(part);
      out.push_back(v);
    } catch (const std::exception&) {
      usage(std::string(flag) + " wants positive integers separated by commas, got '" + text + "'");
    }
  }
  if (out.empty()) usage(std::string(flag) + " is empty");
  return out;
}

int parseInt(const std::string& text, const char* flag, int min) {
  try {
    size_t used = 0;
    int v = std::stoi(text, &used);
    if (used == text.size() && v >= min) return v;
  } catch (const std::exception&) {
  }
  usage(std::string(flag) + " wants an integer >= " + std::to_string(min) + ", got '" + text + "'");
}

Args parseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(flag + " needs a value");
      return argv[++i];
    };
    if (flag == "--model") a.model = value();
    else if (flag == "--shape") a.shape = parseList(value(), "--shape");
    else if (flag == "--dtype") a.dtype = value();
    else if (flag == "--device") a.device = value();
    else if (flag == "--batch") a.batches = parseList(value(), "--batch");
    else if (flag == "--warmup") a.warmup = parseInt(value(), "--warmup", 0);
    else if (flag == "--iters") a.iters = parseInt(value(), "--iters", 1);
    else if (flag == "--threads") a.threads = parseInt(value(), "--threads", 1);
    else if (flag == "--workers") a.workers = parseInt(value(), "--workers", 1);
    else if (flag == "--ig") a.ig = true;
    else if (flag == "--optimize") a.optimize = true;
    else if (flag == "--steps") a.steps = parseInt(value(), "--steps", 1);
    else if (flag == "--chunk") a.chunk = parseInt(value(), "--chunk", 1);
    else if (flag == "--target") a.target = parseInt(value(), "--target", 0);
    else if (flag == "--help" || flag == "-h") usage("help");
    else usage("unknown flag " + flag);
  }
  if (a.model.empty()) usage("--model is required");
  if (a.shape.empty()) usage("--shape is required");
  return a;
}

/** Seeded data of the right dtype: uniform [0, 1) for floats, small integers otherwise. */
std::vector<uint8_t> makeData(torchd::DType dtype, int64_t count) {
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> uniform(0.f, 1.f);
  std::vector<uint8_t> bytes(static_cast<size_t>(count) * torchd::dtypeSize(dtype));
  for (int64_t i = 0; i < count; ++i) {
    float f = uniform(rng);
    void* at = bytes.data() + i * torchd::dtypeSize(dtype);
    switch (dtype) {
      case torchd::DType::Float32: std::memcpy(at, &f, 4); break;
      case torchd::DType::Float64: { double d = f; std::memcpy(at, &d, 8); break; }
      case torchd::DType::Float16:
      case torchd::DType::BFloat16: {
        // bfloat16 is the top half of a float32; for float16 use 0x3C00 (1.0) scaled crudely by
        // keeping values in [1, 2): exponent fixed, random mantissa.
        uint32_t bits;
        std::memcpy(&bits, &f, 4);
        uint16_t half = dtype == torchd::DType::BFloat16 ? static_cast<uint16_t>(bits >> 16)
                                                         : static_cast<uint16_t>(0x3C00 | (rng() & 0x3FF));
        std::memcpy(at, &half, 2);
        break;
      }
      case torchd::DType::Int64: { int64_t v = rng() % 10; std::memcpy(at, &v, 8); break; }
      case torchd::DType::Int32: { int32_t v = rng() % 10; std::memcpy(at, &v, 4); break; }
      case torchd::DType::Int16: { int16_t v = rng() % 10; std::memcpy(at, &v, 2); break; }
      case torchd::DType::Int8: { int8_t v = rng() % 10; std::memcpy(at, &v, 1); break; }
      case torchd::DType::UInt8: { uint8_t v = rng() % 256; std::memcpy(at, &v, 1); break; }
      case torchd::DType::Bool: { uint8_t v = rng() & 1; std::memcpy(at, &v, 1); break; }
    }
  }
  return bytes;
}

const char* forwardModuleName(torchd::ForwardModule m) {
  return m == torchd::ForwardModule::Optimized ? "optimized" : m == torchd::ForwardModule::Pending ? "pending" : "original";
}

double percentile(std::vector<double> sorted, double p) {
  // Nearest-rank percentile of already sorted samples.
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * sorted.size()));
  return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  Args args = parseArgs(argc, argv);
  auto dtype = torchd::parseDType(args.dtype);
  if (!dtype) usage("unknown --dtype " + args.dtype);
  try {
    torchd::LoadOptions options;
    options.device = args.device;
    options.threads = args.threads;
    options.optimize = args.optimize;
    torchd::limitBlasThreadsUnlessSet();
    torchd::prepareTorchThread();
    // --workers W: W executor threads running calls at once on the one module; IG runs on one.
    int workers = args.ig ? 1 : args.workers;
    auto serving = std::make_unique<torchd::ServingModel>(torchd::Model::load(args.model, options), workers);
    const torchd::Model& model = serving->model();
    const torchd::BuildInfo build = torchd::buildInfo();
    for (int64_t batch : args.batches) {
      std::vector<int64_t> shape = args.shape;
      shape[0] = batch;
      int64_t count = torchd::elementCount(shape);
      std::vector<uint8_t> data = makeData(*dtype, count);
      std::vector<torchd::TensorView> inputs(1);
      inputs[0].dtype = *dtype;
      inputs[0].shape = shape;
      inputs[0].data = data.data();
      inputs[0].byteLength = data.size();
      torchd::IgOptions ig;
      ig.steps = args.steps;
      ig.chunk = args.chunk;
      ig.target.assign(static_cast<size_t>(batch), args.target);
      // The server's layout: one ServingModel whose --workers executor threads (each with --threads
      // intra-op threads, on its own CUDA stream) take calls from one FIFO queue, all sharing the one
      // module. Each call times itself from when its thread starts it; items/s counts all of them.
      auto runCalls = [&](int calls, std::vector<double>* ms) {
        std::mutex mutex;
        std::condition_variable finished;
        int left = calls;
        std::optional<torchd::EngineError> failure;
        for (int i = 0; i < calls; ++i) {
          serving->submit(
              [&](torchd::Model& instanceModel) {
                auto t0 = std::chrono::steady_clock::now();
                // Results are copied back to host memory inside (and synchronized on CUDA).
                if (args.ig) {
                  (void)instanceModel.integratedGradients(inputs, ig);
                } else {
                  (void)instanceModel.forward(inputs);
                }
                double took = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
                std::lock_guard<std::mutex> lock(mutex);
                if (ms) ms->push_back(took);
              },
              [&](std::optional<torchd::EngineError> error) {
                std::lock_guard<std::mutex> lock(mutex);
                if (error && !failure) failure = std::move(error);
                if (--left == 0) finished.notify_all();
              });
        }
        std::unique_lock<std::mutex> lock(mutex);
        finished.wait(lock, [&] { return left == 0; });
        if (failure) throw *failure;
      };
      std::vector<double> ms;
      ms.reserve(static_cast<size_t>(args.iters) * workers);
      runCalls(args.warmup * workers, nullptr);
      auto start = std::chrono::steady_clock::now();
      runCalls(args.iters * workers, &ms);
      double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::vector<double> sorted = ms;
      std::sort(sorted.begin(), sorted.end());
      double mean = 0;
      for (double v : ms) mean += v;
      mean /= ms.size();
      std::printf(
          "{\"batch\":%lld,\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"items_per_s\":%.2f,\"mean_ms\":%.4f,\"iters\":%d,"
          "\"threads\":%d,\"workers\":%d,\"device\":\"%s\",\"dtype\":\"%s\",\"mode\":\"%s\",\"steps\":%d,\"forward_module\":\"%s\",\"torch\":\"%s\",\"blas_threads\":%d}\n",
          static_cast<long long>(batch), percentile(sorted, 50), percentile(sorted, 99), static_cast<double>(batch) * args.iters * workers / total,
          mean, args.iters, serving->threads(), workers, model.device().c_str(),
          args.dtype.c_str(), args.ig ? "ig" : "forward", args.ig ? args.steps : 0,
          forwardModuleName(model.optimizeState().serving), build.torchVersion.c_str(), build.blasThreads);
      std::fflush(stdout);
    }
  } catch (const torchd::EngineError& e) {
    std::cerr << "torchd-bench: " << torchd::errorCodeName(e.code()) << ": " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "torchd-bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
