#include "comm/codec/registry.h"

#include "comm/codec/codecs.h"
#include "comm/codec/spec.h"
#include "kernels/base/error.h"

namespace cdl::comm {

const std::vector<CodecEntry>& codecRegistry() {
  static const std::vector<CodecEntry> entries = {
      noneCodecEntry(), fp16CodecEntry(), bf16CodecEntry(), qsgdCodecEntry(), topkCodecEntry(),
  };
  return entries;
}

const CodecEntry* findCodec(CodecId id) {
  for (const CodecEntry& e : codecRegistry()) {
    if (e.id == id) return &e;
  }
  return nullptr;
}

const CodecEntry* findCodec(const std::string& name) {
  for (const CodecEntry& e : codecRegistry()) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

std::string codecNames() {
  const std::vector<CodecEntry>& all = codecRegistry();
  std::string out;
  for (size_t i = 0; i < all.size(); ++i) {
    out += (i == 0 ? "" : i + 1 == all.size() ? " or " : ", ") + std::string(all[i].name);
  }
  return out;
}

RateKey entropyRateKey() {
  return {"entropy",
          [](const std::string& spec, const std::string& v, LayerRate* rate) {
            CDL_CHECK(v == "none" || v == "rans", "codec spec '", spec,
                      "': entropy must be none or rans");
            rate->entropy = v == "none" ? EntropyStage::kNone : EntropyStage::kRans;
          },
          [](const LayerRate& r) -> std::string {
            return r.entropy == EntropyStage::kRans ? "rans" : "none";
          }};
}

}  // namespace cdl::comm
