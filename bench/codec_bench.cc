// cdl-bench codec: single-core encode/decode throughput, coded size and the entropy bound of each
// codec on gradient-like data, with memcpy and zstd measured in the same run as yardsticks.
#include "bench/codec_bench.h"

#include <zstd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "bench/plot.h"
#include "bench/records.h"
#include "comm/codec/codec.h"
#include "comm/codec/spec.h"
#include "kernels/base/error.h"
#include "kernels/bitpack.h"
#include "kernels/histogram.h"
#include "kernels/quantize.h"
#include "kernels/rng.h"

namespace cdl::bench {
namespace {

using nlohmann::json;

struct ZstdResult {
  double bitsPerElement;
  double encodeGbps;  // quantize + pack + compress, per byte of fp32 input
  double decodeGbps;  // decompress + unpack + dequantize, per byte of fp32 output
};

// The zstd yardstick for a qsgd rate: the same quantized symbols and scales, bit-packed, then
// compressed by zstd at `level`. Timed as a whole pipeline, like the codec it stands beside.
ZstdResult zstdOnPacked(const std::vector<float>& x, const comm::LayerRate& rate, uint64_t key,
                        int level) {
  const int64_t n = static_cast<int64_t>(x.size());
  const int64_t nb = kernels::numBuckets(n, rate.bucket);
  std::vector<uint8_t> sym(static_cast<size_t>(n));
  std::vector<float> scales(static_cast<size_t>(nb));
  const size_t packedLen = kernels::packedBytes(n, rate.bits);
  std::vector<uint8_t> packed(static_cast<size_t>(nb) * 4 + packedLen);
  std::vector<uint8_t> z(ZSTD_compressBound(packed.size()));
  kernels::QuantizeParams qp{rate.bits, rate.bucket, rate.rounding, key};
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  size_t zlen = 0;
  const double enc = bestSeconds([&] {
    kernels::quantize(x.data(), n, qp, sym.data(), scales.data());
    std::memcpy(packed.data(), scales.data(), scales.size() * 4);
    kernels::packBits(sym.data(), n, rate.bits, packed.data() + scales.size() * 4);
    zlen = ZSTD_compressCCtx(cctx, z.data(), z.size(), packed.data(), packed.size(), level);
    CDL_CHECK(!ZSTD_isError(zlen), "zstd: ", ZSTD_getErrorName(zlen));
  });
  std::vector<float> y(static_cast<size_t>(n));
  const double dec = bestSeconds([&] {
    const size_t got = ZSTD_decompressDCtx(dctx, packed.data(), packed.size(), z.data(), zlen);
    CDL_CHECK(got == packed.size(), "zstd: decompressed ", got, " of ", packed.size(), " bytes");
    std::memcpy(scales.data(), packed.data(), scales.size() * 4);
    kernels::unpackBits(packed.data() + scales.size() * 4, n, rate.bits, sym.data());
    kernels::dequantize(sym.data(), scales.data(), n, rate.bits, rate.bucket, y.data(), false);
  });
  ZSTD_freeCCtx(cctx);
  ZSTD_freeDCtx(dctx);
  const double bytes = 4.0 * static_cast<double>(n);
  return {8.0 * static_cast<double>(zlen) / static_cast<double>(n), bytes / enc / 1e9,
          bytes / dec / 1e9};
}

// Bits per element of the order-0 entropy bound for qsgd: n * H(symbols) plus the raw scales.
double qsgdEntropyBits(const std::vector<float>& x, const comm::LayerRate& rate, uint64_t key) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> sym(static_cast<size_t>(n));
  std::vector<float> scales(static_cast<size_t>(kernels::numBuckets(n, rate.bucket)));
  kernels::quantize(x.data(), n, {rate.bits, rate.bucket, rate.rounding, key}, sym.data(),
                    scales.data());
  uint64_t counts[256];
  kernels::histogram(sym.data(), n, counts);
  return (kernels::entropyBits(counts) + 32.0 * static_cast<double>(scales.size())) /
         static_cast<double>(n);
}

json nullable(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

// A record's row name: scheme and bits, data, size ("qsgd4/gauss/1048576").
std::string labelOf(const nlohmann::json& r) {
  return r["scheme"].get<std::string>() + (r["bits"].is_null() ? "" : r["bits"].dump()) + "/" +
         r["data"].get<std::string>() + "/" + r["numel"].dump();
}

// One row: the codec of specText on x (n elements of distribution dist), timed and sized, with
// the entropy bound and zstd on the same quantized symbols for qsgd.
json measureCodec(const std::string& specText, const std::vector<float>& x, int64_t n,
                  const std::string& dist, double memcpyGbps) {
  const comm::CodecSpec spec = comm::parseCodecSpec(specText);
  const uint64_t key = kernels::roundingKey(1, 0, 0);
  auto codec = comm::makeCodec(spec.codec);
  std::vector<uint8_t> payload(codec->maxEncodedBytes(n, spec.rate));
  size_t len = 0;
  const double enc = bestSeconds(
      [&] { len = codec->encode(x.data(), n, spec.rate, key, payload.data(), payload.size()); });
  std::vector<float> y(x.size());
  const double dec =
      bestSeconds([&] { codec->decode(payload.data(), len, y.data(), n, /*accumulate=*/false); });
  const double bytes = 4.0 * static_cast<double>(n);
  const double bits = 8.0 * static_cast<double>(len) / static_cast<double>(n);
  double entropy = NAN;
  ZstdResult z1{NAN, NAN, NAN}, z3{NAN, NAN, NAN};
  if (spec.codec == comm::CodecId::kQsgd) {
    entropy = qsgdEntropyBits(x, spec.rate, key);
    z1 = zstdOnPacked(x, spec.rate, key, 1);
    z3 = zstdOnPacked(x, spec.rate, key, 3);
  }
  json r = {{"codec", comm::formatCodecSpec(spec)},
            {"scheme", codec->name()},
            {"bits", spec.codec == comm::CodecId::kQsgd ? json(spec.rate.bits) : json(nullptr)},
            {"data", dist},
            {"numel", n},
            {"payload_bytes", len},
            {"encode_gbps", bytes / enc / 1e9},
            {"decode_gbps", bytes / dec / 1e9},
            {"bits_per_element", bits},
            {"entropy_bits_per_element", nullable(entropy)},
            {"coded_over_entropy", nullable(bits / entropy)},
            {"zstd1_bits_per_element", nullable(z1.bitsPerElement)},
            {"zstd1_encode_gbps", nullable(z1.encodeGbps)},
            {"zstd3_bits_per_element", nullable(z3.bitsPerElement)},
            {"zstd3_encode_gbps", nullable(z3.encodeGbps)},
            {"zstd3_decode_gbps", nullable(z3.decodeGbps)},
            {"memcpy_gbps", memcpyGbps}};
  r["label"] = labelOf(r);
  return r;
}

// A number of a record for the table; NaN for null.
double num(const json& v) { return v.is_number() ? v.get<double>() : NAN; }

void printRow(const json& r, const std::string& sizeText) {
  std::printf("%-52s %-7s %5s %7.3f %7.3f %7.4f %7.2f %7.2f %7.3f %7.2f %7.3f %7.2f\n",
              r["codec"].get<std::string>().c_str(), r["data"].get<std::string>().c_str(),
              sizeText.c_str(), num(r["bits_per_element"]), num(r["entropy_bits_per_element"]),
              num(r["coded_over_entropy"]), num(r["encode_gbps"]), num(r["decode_gbps"]),
              num(r["zstd3_bits_per_element"]), num(r["zstd3_encode_gbps"]),
              num(r["zstd1_bits_per_element"]), num(r["memcpy_gbps"]));
  std::fflush(stdout);
}

void plotRows(const std::string& png, const std::vector<json>& records) {
  std::vector<std::string> labels;
  std::vector<BarColumn> columns{
      {"bits_per_element", {}}, {"encode_gbps", {}}, {"decode_gbps", {}}};
  for (const json& r : records) {
    labels.push_back(r["label"].get<std::string>());
    for (BarColumn& c : columns) c.values.push_back(num(r[c.title]));
  }
  plotBars(png, "cdl-bench codec: bits per element and throughput (GB/s of fp32)", labels, columns);
}

}  // namespace

int runCodecBench(const CodecBenchOptions& opt) {
  if (opt.device == "cuda") {
#if CDL_WITH_CUDA
    return runCodecBenchCuda(opt);
#else
    std::fprintf(stderr,
                 "cdl-bench codec --device cuda: this build has no CUDA path (configure with "
                 "-DCDL_WITH_CUDA=ON)\n");
    return 2;
#endif
  }
  std::vector<json> records;
  if (!opt.sink.json) {
    std::printf("%-52s %-7s %5s %7s %7s %7s %7s %7s %7s %7s %7s %7s\n", "codec", "data", "numel",
                "bits/el", "H/el", "coded/H", "enc", "dec", "zstd3", "zstd3", "zstd1", "memcpy");
    std::printf("%-52s %-7s %5s %7s %7s %7s %7s %7s %7s %7s %7s %7s\n", "", "", "", "", "", "",
                "GB/s", "GB/s", "bits/el", "GB/s", "bits/el", "GB/s");
  }
  for (const std::string& sizeText : opt.sizes) {
    const int64_t n = parseCount(sizeText);
    for (const std::string& dist : opt.dists) {
      const std::vector<float> x = gradientData(dist, n, 1234);
      std::vector<float> copy(x.size());
      const double memcpyGbps =
          4.0 * static_cast<double>(n) /
          bestSeconds([&] { std::memcpy(copy.data(), x.data(), x.size() * 4); }) / 1e9;
      for (const std::string& specText : opt.codecs) {
        records.push_back(measureCodec(specText, x, n, dist, memcpyGbps));
        if (!opt.sink.json) printRow(records.back(), sizeText);
      }
    }
  }
  emitRecords(opt.sink, records,
              plainColumns({"label", "codec", "data", "numel", "bits_per_element",
                            "entropy_bits_per_element", "encode_gbps", "decode_gbps",
                            "zstd3_bits_per_element", "zstd3_encode_gbps", "memcpy_gbps"}),
              [&](const std::string& png) { plotRows(png, records); });
  return 0;
}

}  // namespace cdl::bench
