// topk: keeps the k = round(density * n) elements of largest magnitude (at least one when n > 0).
//
// Body: u64 gapBytes, then u64 section lengths, then the sections.
//   The gaps between kept indices (first index, then idx[i] - idx[i-1] - 1) as LEB128 varints,
//   gapBytes bytes in all. Entropy stage none: sections are [gaps raw][values as fp32];
//   rans: [gaps rANS-coded][value byte plane 0]..[plane 3], each plane the j-th byte of every
//   kept fp32 value, rANS-coded (the stream falls back to raw bytes where coding would not pay).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "comm/codec/codecs.h"
#include "comm/codec/spec.h"
#include "kernels/base/bytes.h"
#include "kernels/base/error.h"
#include "kernels/rans.h"
#include "kernels/topk.h"

namespace cdl::comm {
namespace {

constexpr int kMaxVarintBytes = 5;  // a 32-bit gap

int64_t keptCount(int64_t n, double density) {
  if (n == 0) return 0;
  const int64_t k = std::llround(density * static_cast<double>(n));
  return std::min(n, std::max<int64_t>(1, k));
}

void checkRate(const LayerRate& r) {
  CDL_CHECK(r.density > 0.0 && r.density <= 1.0, "topk: density = ", r.density,
            " (must be in (0, 1])");
  CDL_CHECK(r.entropy == EntropyStage::kNone || r.entropy == EntropyStage::kRans,
            "topk: unknown entropy stage");
}

class TopkCodec : public Codec {
 public:
  CodecId id() const override { return CodecId::kTopk; }
  bool summable() const override { return false; }

  size_t maxEncodedBytes(int64_t n, const LayerRate& rate) const override {
    checkRate(rate);
    const int64_t k = keptCount(n, rate.density);
    const size_t gaps = static_cast<size_t>(k) * kMaxVarintBytes;
    if (rate.entropy == EntropyStage::kNone) return kHeaderBytes + 8 + 2 * 8 + gaps + 4 * k;
    return kHeaderBytes + 8 + 5 * 8 + kernels::ransMaxEncodedBytes(static_cast<int64_t>(gaps)) +
           4 * kernels::ransMaxEncodedBytes(k);
  }

  size_t encode(const float* x, int64_t n, const LayerRate& rate, uint64_t, uint8_t* out,
                size_t capacity) const override {
    CDL_CHECK(n >= 0 && (x != nullptr || n == 0), "topk: bad input (n = ", n, ")");
    const size_t bound = maxEncodedBytes(n, rate);
    CDL_CHECK(capacity >= bound, "topk: output capacity ", capacity, " < ", bound);
    requireFinite("topk", x, n);
    const int64_t k = keptCount(n, rate.density);
    std::vector<uint32_t> idx(static_cast<size_t>(k));
    kernels::topkIndices(x, n, k, idx.data());

    std::vector<uint8_t> gaps;
    gaps.reserve(static_cast<size_t>(k) * 2);
    uint32_t prev = 0;
    for (int64_t i = 0; i < k; ++i) {
      uint32_t g = i == 0 ? idx[0] : idx[i] - prev - 1;
      prev = idx[i];
      while (g >= 0x80u) {
        gaps.push_back(static_cast<uint8_t>(g | 0x80u));
        g >>= 7;
      }
      gaps.push_back(static_cast<uint8_t>(g));
    }
    std::vector<float> values(static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i) values[i] = x[idx[i]];

    uint8_t* body = out + kHeaderBytes;
    storeLE<uint64_t>(body, gaps.size());
    const bool rans = rate.entropy == EntropyStage::kRans;
    const int sections = rans ? 5 : 2;
    uint8_t* lens = body + 8;
    uint8_t* p = lens + 8 * sections;
    auto section = [&](int s, size_t len) {
      storeLE<uint64_t>(lens + 8 * s, len);
      p += len;
    };
    const uint8_t* end = out + capacity;
    if (rans) {
      section(0, kernels::ransEncode(gaps.data(), static_cast<int64_t>(gaps.size()), p,
                                     static_cast<size_t>(end - p)));
      std::vector<uint8_t> plane(static_cast<size_t>(k));
      for (int j = 0; j < 4; ++j) {
        const uint8_t* bytes = reinterpret_cast<const uint8_t*>(values.data());
        for (int64_t i = 0; i < k; ++i) plane[i] = bytes[4 * i + j];
        section(1 + j, kernels::ransEncode(plane.data(), k, p, static_cast<size_t>(end - p)));
      }
    } else {
      if (!gaps.empty()) std::memcpy(p, gaps.data(), gaps.size());
      section(0, gaps.size());
      if (k > 0) std::memcpy(p, values.data(), static_cast<size_t>(k) * 4);
      section(1, static_cast<size_t>(k) * 4);
    }
    PayloadHeader h;
    h.codec = CodecId::kTopk;
    h.numel = static_cast<uint64_t>(n);
    h.entropy = static_cast<uint8_t>(rate.entropy);
    h.arg = static_cast<uint64_t>(k);
    h.bodyBytes = static_cast<uint64_t>(p - body);
    writeHeader(h, out);
    return kHeaderBytes + h.bodyBytes;
  }

 protected:
  void decodeBody(const PayloadHeader& h, const uint8_t* body, float* out, int64_t n,
                  bool accumulate) const override {
    CDL_CHECK(h.bits == 0 && h.rounding == 0 && h.bucket == 0 && h.entropy <= 1,
              "topk payload: unexpected codec parameters in the header");
    CDL_CHECK(h.arg <= static_cast<uint64_t>(n), "topk payload: keeps ", h.arg, " of ", n,
              " elements");
    const int64_t k = static_cast<int64_t>(h.arg);
    const bool rans = h.entropy == static_cast<uint8_t>(EntropyStage::kRans);
    const int sections = rans ? 5 : 2;
    const uint64_t fixed = 8 + 8 * static_cast<uint64_t>(sections);
    CDL_CHECK(h.bodyBytes >= fixed, "topk payload: body of ", h.bodyBytes, " bytes is too short");
    const uint64_t gapBytes = loadLE<uint64_t>(body);
    CDL_CHECK(gapBytes >= static_cast<uint64_t>(k) &&
                  gapBytes <= static_cast<uint64_t>(k) * kMaxVarintBytes,
              "topk payload: ", gapBytes, " index bytes for ", k, " indices");
    std::vector<uint64_t> len(sections);
    uint64_t total = fixed;
    for (int s = 0; s < sections; ++s) {
      len[s] = loadLE<uint64_t>(body + 8 + 8 * s);
      CDL_CHECK(len[s] <= h.bodyBytes - total, "topk payload: section ", s, " of ", len[s],
                " bytes overruns the body");
      total += len[s];
    }
    CDL_CHECK(total == h.bodyBytes, "topk payload: sections add up to ", total, " of ", h.bodyBytes,
              " bytes");
    const uint8_t* p = body + fixed;
    std::vector<uint8_t> gaps(gapBytes);
    std::vector<float> values(static_cast<size_t>(k));
    if (rans) {
      kernels::ransDecode(p, len[0], static_cast<int64_t>(gapBytes), gaps.data());
      p += len[0];
      std::vector<uint8_t> plane(static_cast<size_t>(k));
      uint8_t* bytes = reinterpret_cast<uint8_t*>(values.data());
      for (int j = 0; j < 4; ++j) {
        kernels::ransDecode(p, len[1 + j], k, plane.data());
        p += len[1 + j];
        for (int64_t i = 0; i < k; ++i) bytes[4 * i + j] = plane[i];
      }
    } else {
      CDL_CHECK(len[0] == gapBytes && len[1] == static_cast<uint64_t>(k) * 4,
                "topk payload: raw sections of ", len[0], " and ", len[1], " bytes for ", k,
                " elements");
      if (gapBytes > 0) std::memcpy(gaps.data(), p, gapBytes);
      if (k > 0) std::memcpy(values.data(), p + gapBytes, static_cast<size_t>(k) * 4);
    }
    // Rebuild the indices, checking that they are strictly increasing and inside the tensor.
    std::vector<uint32_t> idx(static_cast<size_t>(k));
    size_t pos = 0;
    int64_t next = 0;
    for (int64_t i = 0; i < k; ++i) {
      uint64_t g = 0;
      int shift = 0;
      while (true) {
        CDL_CHECK(pos < gaps.size(), "topk payload: index ", i, " runs past the index bytes");
        const uint8_t b = gaps[pos++];
        g |= static_cast<uint64_t>(b & 0x7fu) << shift;
        if (!(b & 0x80u)) break;
        shift += 7;
        CDL_CHECK(shift < 7 * kMaxVarintBytes, "topk payload: index ", i, " has an overlong gap");
      }
      const uint64_t at = static_cast<uint64_t>(next) + g;
      CDL_CHECK(at < static_cast<uint64_t>(n), "topk payload: index ", at, " outside ", n,
                " elements");
      idx[i] = static_cast<uint32_t>(at);
      next = static_cast<int64_t>(at) + 1;
    }
    CDL_CHECK(pos == gaps.size(), "topk payload: ", gaps.size() - pos, " index bytes left over");
    for (int64_t i = 0; i < k; ++i) {
      CDL_CHECK(std::isfinite(values[i]), "topk payload: value ", i, " is not finite");
    }
    if (!accumulate && n > 0) std::memset(out, 0, static_cast<size_t>(n) * sizeof(float));
    for (int64_t i = 0; i < k; ++i) out[idx[i]] += values[i];
  }
};

}  // namespace

CodecEntry topkCodecEntry() {
  std::vector<RateKey> keys = {{"density",
                                [](const std::string& spec, const std::string& v, LayerRate* r) {
                                  r->density = specNumber(spec, "density", v);
                                  CDL_CHECK(r->density > 0.0 && r->density <= 1.0, "codec spec '",
                                            spec, "': density must be in (0, 1]");
                                },
                                [](const LayerRate& r) {
                                  std::ostringstream os;
                                  os << r.density;
                                  return os.str();
                                }},
                               entropyRateKey()};
  return {CodecId::kTopk, "topk", std::move(keys),
          [] { return std::unique_ptr<Codec>(std::make_unique<TopkCodec>()); }};
}

}  // namespace cdl::comm
