// cdl-bench codec --device cuda: the device payload codecs (Note [Device payload codecs]) on
// device buffers, timed with CUDA events against a device-to-device cudaMemcpy of the same fp32
// bytes in the same run, and checked byte for byte against the CPU codec's payload.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "bench/codec_bench.h"
#include "bench/plot.h"
#include "bench/records.h"
#include "comm/codec/codec.h"
#include "comm/codec/cuda/device_codec.h"
#include "comm/codec/spec.h"
#include "kernels/base/checks.h"
#include "kernels/base/error.h"
#include "kernels/cuda/device.h"
#include "kernels/rng.h"

namespace cdl::bench {
namespace {

using nlohmann::json;

constexpr int kReps = 10;

// Device memory for the run, freed at scope exit.
class DeviceBytes {
 public:
  explicit DeviceBytes(size_t bytes) {
    CDL_CUDA_CHECK(cudaMalloc(&p_, std::max<size_t>(bytes, 1)));
  }
  ~DeviceBytes() { cudaFree(p_); }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
};

// The fastest of kReps runs of fn on `stream`, from an event before it to one after it (fn may
// synchronize inside: the device codecs do, so this is their end-to-end time).
double bestEventSeconds(cudaStream_t stream, const std::function<void()>& fn) {
  cudaEvent_t start, stop;
  CDL_CUDA_CHECK(cudaEventCreate(&start));
  CDL_CUDA_CHECK(cudaEventCreate(&stop));
  fn();  // warm-up: the memory pool, the pinned staging buffer, the kernels' first launch
  float best = std::numeric_limits<float>::infinity();
  for (int r = 0; r < kReps; ++r) {
    CDL_CUDA_CHECK(cudaEventRecord(start, stream));
    fn();
    CDL_CUDA_CHECK(cudaEventRecord(stop, stream));
    CDL_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    CDL_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    best = std::min(best, ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return best / 1e3;
}

// Note [Stream-ordered scratch]: keep freed scratch in the pool between the timed runs.
void keepPoolMemory() {
  int device = 0;
  CDL_CUDA_CHECK(cudaGetDevice(&device));
  cudaMemPool_t pool;
  CDL_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  uint64_t threshold = std::numeric_limits<uint64_t>::max();
  CDL_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
}

std::string deviceName() {
  int device = 0;
  cudaDeviceProp prop{};
  CDL_CUDA_CHECK(cudaGetDevice(&device));
  CDL_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

struct Input {
  const std::vector<float>* host;
  const float* dev;
  int64_t n;
  std::string dist;
  double memcpyGbps;
};

json measureDeviceCodec(const std::string& specText, const Input& in, cudaStream_t stream) {
  const comm::CodecSpec spec = comm::parseCodecSpec(specText);
  const uint64_t key = kernels::roundingKey(1, 0, 0);
  const auto cpu = comm::makeCodec(spec.codec);
  const size_t capacity = cpu->maxEncodedBytes(in.n, spec.rate);
  DeviceBytes payload(capacity);
  DeviceBytes out(4 * static_cast<size_t>(in.n));
  size_t len = 0;
  const double enc = bestEventSeconds(stream, [&] {
    len = comm::cuda::encode(spec.codec, in.dev, in.n, spec.rate, key, payload.as<uint8_t>(),
                             capacity, stream);
  });
  const double dec = bestEventSeconds(stream, [&] {
    comm::cuda::decode(payload.as<uint8_t>(), len, out.as<float>(), in.n, false, stream);
  });
  Bytes gpu(len);
  CDL_CUDA_CHECK(cudaMemcpy(gpu.data(), payload.as<uint8_t>(), len, cudaMemcpyDeviceToHost));
  const bool same = gpu == cpu->encode(in.host->data(), in.n, spec.rate, key);
  const double bytes = 4.0 * static_cast<double>(in.n);
  json r = {{"codec", comm::formatCodecSpec(spec)},
            {"scheme", cpu->name()},
            {"bits", spec.codec == comm::CodecId::kQsgd ? json(spec.rate.bits) : json(nullptr)},
            {"data", in.dist},
            {"numel", in.n},
            {"device", "cuda"},
            {"payload_bytes", len},
            {"bits_per_element", 8.0 * static_cast<double>(len) / static_cast<double>(in.n)},
            {"encode_gbps", bytes / enc / 1e9},
            {"decode_gbps", bytes / dec / 1e9},
            {"memcpy_gbps", in.memcpyGbps},
            {"encode_over_memcpy", bytes / enc / 1e9 / in.memcpyGbps},
            {"decode_over_memcpy", bytes / dec / 1e9 / in.memcpyGbps},
            {"matches_cpu", same}};
  r["label"] = r["scheme"].get<std::string>() + (r["bits"].is_null() ? "" : r["bits"].dump()) +
               "/" + in.dist + "/" + std::to_string(in.n);
  return r;
}

void printRow(const json& r, const std::string& sizeText) {
  std::printf("%-52s %-7s %5s %7.3f %8.2f %8.2f %8.2f %6.3f %6.3f %s\n",
              r["codec"].get<std::string>().c_str(), r["data"].get<std::string>().c_str(),
              sizeText.c_str(), r["bits_per_element"].get<double>(), r["encode_gbps"].get<double>(),
              r["decode_gbps"].get<double>(), r["memcpy_gbps"].get<double>(),
              r["encode_over_memcpy"].get<double>(), r["decode_over_memcpy"].get<double>(),
              r["matches_cpu"].get<bool>() ? "yes" : "NO");
  std::fflush(stdout);
}

}  // namespace

int runCodecBenchCuda(const CodecBenchOptions& opt) {
  if (!kernels::cuda::cudaDeviceAvailable()) {
    std::fprintf(stderr, "cdl-bench codec --device cuda: no CUDA device visible on this machine\n");
    return 1;
  }
  keepPoolMemory();
  cudaStream_t stream;
  CDL_CUDA_CHECK(cudaStreamCreate(&stream));
  if (!opt.sink.json) {
    std::printf("device: %s\n%-52s %-7s %5s %7s %8s %8s %8s %6s %6s %s\n", deviceName().c_str(),
                "codec", "data", "numel", "bits/el", "enc GB/s", "dec GB/s", "d2d GB/s", "enc/cp",
                "dec/cp", "same bytes as CPU");
  }
  std::vector<json> records;
  bool allSame = true;
  for (const std::string& sizeText : opt.sizes) {
    const int64_t n = parseCount(sizeText);
    for (const std::string& dist : opt.dists) {
      const std::vector<float> x = gradientData(dist, n, 1234);
      DeviceBytes xDev(x.size() * 4), copy(x.size() * 4);
      CDL_CUDA_CHECK(cudaMemcpy(xDev.as<float>(), x.data(), x.size() * 4, cudaMemcpyHostToDevice));
      const double memcpyGbps =
          4.0 * static_cast<double>(n) / 1e9 / bestEventSeconds(stream, [&] {
            CDL_CUDA_CHECK(cudaMemcpyAsync(copy.as<float>(), xDev.as<float>(), x.size() * 4,
                                           cudaMemcpyDeviceToDevice, stream));
          });
      const Input in{&x, xDev.as<float>(), n, dist, memcpyGbps};
      for (const std::string& specText : opt.codecs) {
        if (!comm::cuda::hasDeviceCodec(comm::parseCodecSpec(specText).codec)) {
          std::fprintf(stderr, "cdl-bench codec --device cuda: skipping %s (host-only codec)\n",
                       specText.c_str());
          continue;
        }
        records.push_back(measureDeviceCodec(specText, in, stream));
        allSame = allSame && records.back()["matches_cpu"].get<bool>();
        if (!opt.sink.json) printRow(records.back(), sizeText);
      }
    }
  }
  cudaStreamDestroy(stream);
  emitRecords(opt.sink, records,
              plainColumns({"label", "codec", "data", "numel", "device", "bits_per_element",
                            "encode_gbps", "decode_gbps", "memcpy_gbps", "encode_over_memcpy",
                            "decode_over_memcpy", "matches_cpu"}),
              [&](const std::string& png) {
                std::vector<std::string> labels;
                std::vector<BarColumn> columns{
                    {"encode_gbps", {}}, {"decode_gbps", {}}, {"memcpy_gbps", {}}};
                for (const json& r : records) {
                  labels.push_back(r["label"].get<std::string>());
                  for (BarColumn& c : columns) c.values.push_back(r[c.title].get<double>());
                }
                plotBars(png, "cdl-bench codec --device cuda: GB/s of fp32 (device memcpy beside)",
                         labels, columns);
              });
  if (!allSame)
    std::fprintf(stderr, "cdl-bench codec --device cuda: payloads differ from the CPU's\n");
  return allSame ? 0 : 1;
}

}  // namespace cdl::bench
