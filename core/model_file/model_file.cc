#include "core/model_file/model_file.h"

#include <xxhash.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "kernels/base/byte_io.h"
#include "kernels/base/error.h"
#include "kernels/half.h"
#include "kernels/rans.h"
#include "kernels/row_multiset.h"

namespace cdl::core {
namespace {

constexpr char kMagic[4] = {'C', 'D', 'L', 'M'};
constexpr uint16_t kVersion = 1;
constexpr size_t kMaxNameBytes = 1024;
constexpr uint32_t kMaxTensors = 1u << 16;
constexpr uint32_t kMaxMetaBytes = 1u << 20;

int64_t shapeElements(const std::vector<int64_t>& shape, const std::string& name) {
  int64_t n = 1;
  for (int64_t d : shape) {
    CDL_CHECK(d >= 0 && d <= kMaxTensorElements, "tensor '", name, "': dimension ", d,
              " is outside 0..", kMaxTensorElements);
    n *= d;
    CDL_CHECK(n <= kMaxTensorElements, "tensor '", name, "': more than ", kMaxTensorElements,
              " elements");
  }
  return n;
}

void checkFields(const ModelTensor& t) {
  const std::string& n = t.name;
  CDL_CHECK(!n.empty() && n.size() <= kMaxNameBytes, "a tensor name of ", n.size(),
            " bytes (must be 1..", kMaxNameBytes, ")");
  CDL_CHECK(t.shape.size() <= kMaxTensorDims, "tensor '", n, "': ", t.shape.size(),
            " dimensions, at most ", kMaxTensorDims);
  shapeElements(t.shape, n);
  switch (t.kind) {
    case TensorKind::kQuantized:
      CDL_CHECK(t.coder == TensorCoder::kRans || t.coder == TensorCoder::kRowMultiset,
                "quantized tensor '", n, "' with coder ", coderName(t.coder));
      CDL_CHECK(t.bits >= 1 && t.bits <= 8, "tensor '", n, "': ", t.bits, " bits, must be 1..8");
      CDL_CHECK(std::isfinite(t.step) && t.step > 0, "tensor '", n, "': step ", t.step,
                " is not a positive number");
      CDL_CHECK(t.coder != TensorCoder::kRowMultiset || !t.shape.empty(), "tensor '", n,
                "': a row-multiset stream needs at least one dimension");
      return;
    case TensorKind::kFloat:
      CDL_CHECK(t.coder == TensorCoder::kFp32 || t.coder == TensorCoder::kFp16, "float tensor '", n,
                "' with coder ", coderName(t.coder));
      break;
    case TensorKind::kInt64:
      CDL_CHECK(t.coder == TensorCoder::kInt64, "int64 tensor '", n, "' with coder ",
                coderName(t.coder));
      break;
    default:
      CDL_THROW("tensor '", n, "': unknown kind ", int(t.kind));
  }
  CDL_CHECK(t.bits == 0 && t.step == 0.0f, "tensor '", n, "': bits or step on a ",
            t.kind == TensorKind::kFloat ? "float" : "int64", " tensor");
}

std::vector<uint8_t> ransStream(const ModelTensor& t) {
  const int64_t n = t.numel();
  const kernels::RansOptions opt{12, 16};
  std::vector<uint8_t> out(kernels::ransMaxEncodedBytes(n, opt));
  out.resize(kernels::ransEncode(t.symbols.data(), n, out.data(), out.size(), opt));
  return out;
}

// The coded symbols. A row multiset that comes out larger than the plain stream of the same
// (sorted) rows, as near-uniform symbols packed at their width can, becomes that plain stream.
std::vector<uint8_t> encodeSymbols(ModelTensor& t) {
  const int64_t n = t.numel();
  CDL_CHECK(static_cast<int64_t>(t.symbols.size()) == n, "tensor '", t.name,
            "': ", t.symbols.size(), " symbols for ", n, " elements");
  const int alphabet = 1 << t.bits;
  for (uint8_t s : t.symbols) {
    CDL_CHECK(s < alphabet, "tensor '", t.name, "': symbol ", int(s), " is not below 2^", t.bits);
  }
  std::vector<uint8_t> plain = ransStream(t);
  if (t.coder == TensorCoder::kRans) return plain;
  std::vector<uint8_t> out(kernels::rowMultisetMaxEncodedBytes(t.rows(), t.cols(), alphabet));
  out.resize(kernels::rowMultisetEncode(t.symbols.data(), t.rows(), t.cols(), alphabet, false,
                                        out.data(), out.size()));
  if (out.size() <= plain.size()) return out;
  t.coder = TensorCoder::kRans;
  return plain;
}

std::vector<uint8_t> encodeValues(ModelTensor& t) {
  const int64_t n = t.numel();
  std::vector<uint8_t> out;
  if (t.kind == TensorKind::kInt64) {
    CDL_CHECK(static_cast<int64_t>(t.ints.size()) == n, "tensor '", t.name, "': ", t.ints.size(),
              " values for ", n, " elements");
    out.resize(8 * n);
    for (int64_t i = 0; i < n; ++i) storeLE<int64_t>(out.data() + 8 * i, t.ints[i]);
    return out;
  }
  CDL_CHECK(static_cast<int64_t>(t.values.size()) == n, "tensor '", t.name, "': ", t.values.size(),
            " values for ", n, " elements");
  float maxAbs = 0;
  CDL_CHECK(kernels::firstNonFinite(t.values.data(), n, &maxAbs) < 0, "tensor '", t.name,
            "' holds a NaN or Inf");
  if (t.coder == TensorCoder::kFp16) {
    std::vector<uint16_t> h(n);
    kernels::floatToHalf(t.values.data(), n, h.data());
    kernels::halfToFloat(h.data(), n, t.values.data(), false);
    out.resize(2 * n);
    for (int64_t i = 0; i < n; ++i) storeLE<uint16_t>(out.data() + 2 * i, h[i]);
  } else {
    out.resize(4 * n);
    for (int64_t i = 0; i < n; ++i) storeLE<float>(out.data() + 4 * i, t.values[i]);
  }
  return out;
}

void writeEntry(ByteWriter& w, const ModelTensor& t, uint64_t offset) {
  w.put<uint16_t>(static_cast<uint16_t>(t.name.size()));
  w.putBytes(t.name.data(), t.name.size());
  w.put<uint8_t>(static_cast<uint8_t>(t.kind));
  w.put<uint8_t>(static_cast<uint8_t>(t.coder));
  w.put<uint8_t>(static_cast<uint8_t>(t.bits));
  w.put<uint8_t>(t.kind == TensorKind::kQuantized && t.isSigned ? 1 : 0);
  w.put<uint8_t>(static_cast<uint8_t>(t.shape.size()));
  for (int64_t d : t.shape) w.putVarint(static_cast<uint64_t>(d));
  w.put<float>(t.step);
  w.putVarint(offset);
  w.putVarint(t.coded.size());
  w.put<uint64_t>(XXH64(t.coded.data(), t.coded.size(), 0));
}

struct Entry {
  ModelTensor tensor;
  uint64_t offset = 0, length = 0, hash = 0;
};

Entry readEntry(ByteReader& r) {
  Entry e;
  ModelTensor& t = e.tensor;
  const uint16_t nameBytes = r.take<uint16_t>("a tensor name length");
  const uint8_t* name = r.takeBytes(nameBytes, "a tensor name");
  t.name.assign(reinterpret_cast<const char*>(name), nameBytes);
  t.kind = static_cast<TensorKind>(r.take<uint8_t>("a tensor kind"));
  t.coder = static_cast<TensorCoder>(r.take<uint8_t>("a tensor coder"));
  t.bits = r.take<uint8_t>("a tensor's bits");
  const uint8_t isSigned = r.take<uint8_t>("a tensor's signedness");
  CDL_CHECK(isSigned <= 1, "tensor '", t.name, "': signed flag ", int(isSigned),
            ", must be 0 or 1");
  t.isSigned = isSigned == 1;
  const uint8_t dims = r.take<uint8_t>("a tensor's dimension count");
  CDL_CHECK(dims <= kMaxTensorDims, "tensor '", t.name, "': ", int(dims), " dimensions, at most ",
            kMaxTensorDims);
  for (int d = 0; d < dims; ++d) {
    t.shape.push_back(static_cast<int64_t>(r.takeVarint("a tensor shape")));
  }
  t.step = r.take<float>("a tensor step");
  e.offset = r.takeVarint("a tensor offset");
  e.length = r.takeVarint("a tensor length");
  e.hash = r.take<uint64_t>("a tensor hash");
  checkFields(t);
  CDL_CHECK(t.kind == TensorKind::kQuantized || t.isSigned == false, "tensor '", t.name,
            "': signed flag on a tensor that is not quantized");
  return e;
}

void decodeValues(ModelTensor& t) {
  const int64_t n = t.numel();
  const uint8_t* p = t.coded.data();
  const size_t width = t.coder == TensorCoder::kFp16 ? 2 : t.coder == TensorCoder::kFp32 ? 4 : 8;
  CDL_CHECK(t.coded.size() == width * static_cast<size_t>(n), "tensor '", t.name,
            "': ", t.coded.size(), " bytes for ", n, " elements of ", width, " bytes");
  if (t.kind == TensorKind::kInt64) {
    t.ints.resize(n);
    for (int64_t i = 0; i < n; ++i) t.ints[i] = loadLE<int64_t>(p + 8 * i);
    return;
  }
  t.values.resize(n);
  if (t.coder == TensorCoder::kFp16) {
    std::vector<uint16_t> h(n);
    for (int64_t i = 0; i < n; ++i) h[i] = loadLE<uint16_t>(p + 2 * i);
    kernels::halfToFloat(h.data(), n, t.values.data(), false);
  } else {
    for (int64_t i = 0; i < n; ++i) t.values[i] = loadLE<float>(p + 4 * i);
  }
  float maxAbs = 0;
  CDL_CHECK(kernels::firstNonFinite(t.values.data(), n, &maxAbs) < 0, "tensor '", t.name,
            "' holds a NaN or Inf");
}

void readPayload(ByteReader& r, std::vector<Entry>& entries, ModelFile& f, bool decodeStreams,
                 bool verifyHashes) {
  uint64_t expected = 0;
  for (Entry& e : entries) {
    ModelTensor& t = e.tensor;
    CDL_CHECK(e.offset == expected, "tensor '", t.name, "': offset ", e.offset, ", expected ",
              expected, " (tensors lie back to back)");
    const uint8_t* p = r.takeBytes(e.length, "a tensor's bytes");
    expected += e.length;
    CDL_CHECK(!verifyHashes || XXH64(p, e.length, 0) == e.hash, "tensor '", t.name,
              "': hash mismatch, its bytes are corrupt");
    t.coded.assign(p, p + e.length);
    if (t.kind != TensorKind::kQuantized) {
      decodeValues(t);
    } else if (decodeStreams) {
      try {
        t.symbols = decodeSymbols(t);
      } catch (const Error& err) {
        CDL_THROW("tensor '", t.name, "': ", err.what());
      }
    }
    f.tensors.push_back(std::move(t));
  }
  CDL_CHECK(r.left() == 0, r.left(), " bytes after the last tensor");
}

}  // namespace

const char* coderName(TensorCoder c) {
  switch (c) {
    case TensorCoder::kFp32:
      return "fp32";
    case TensorCoder::kFp16:
      return "fp16";
    case TensorCoder::kInt64:
      return "int64";
    case TensorCoder::kRans:
      return "rans";
    case TensorCoder::kRowMultiset:
      return "row-multiset";
  }
  return "unknown";
}

int64_t ModelTensor::numel() const { return shapeElements(shape, name); }

int64_t ModelTensor::rows() const { return shape.empty() ? 1 : shape[0]; }

int64_t ModelTensor::cols() const {
  const int64_t r = rows();
  return r == 0 ? 0 : numel() / r;
}

const ModelTensor* ModelFile::find(const std::string& name) const {
  for (const ModelTensor& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::vector<uint8_t> encodeModelFile(ModelFile& file) {
  CDL_CHECK(file.meta.size() <= kMaxMetaBytes, "model description of ", file.meta.size(),
            " bytes, at most ", kMaxMetaBytes);
  CDL_CHECK(file.tensors.size() <= kMaxTensors, file.tensors.size(), " tensors, at most ",
            kMaxTensors);
  ByteWriter w;
  w.putBytes(kMagic, sizeof(kMagic));
  w.put<uint16_t>(kVersion);
  w.put<uint16_t>(0);
  w.put<uint32_t>(static_cast<uint32_t>(file.meta.size()));
  w.putBytes(file.meta.data(), file.meta.size());
  w.put<uint32_t>(static_cast<uint32_t>(file.tensors.size()));
  uint64_t offset = 0;
  for (ModelTensor& t : file.tensors) {
    checkFields(t);
    t.coded = t.kind == TensorKind::kQuantized ? encodeSymbols(t) : encodeValues(t);
    writeEntry(w, t, offset);
    offset += t.coded.size();
  }
  w.put<uint64_t>(XXH64(w.bytes().data(), w.bytes().size(), 0));
  for (const ModelTensor& t : file.tensors) w.putBytes(t.coded.data(), t.coded.size());
  file.fileBytes = w.bytes().size();
  return std::move(w.bytes());
}

ModelFile decodeModelFile(const uint8_t* data, size_t len, bool decodeStreams, bool verifyHashes) {
  ByteReader r(data, len);
  const uint8_t* magic = r.takeBytes(4, "the magic");
  CDL_CHECK(std::memcmp(magic, kMagic, 4) == 0, "not a .cdlm model file (bad magic)");
  const uint16_t version = r.take<uint16_t>("the version");
  CDL_CHECK(version == kVersion, "format version ", version, ", this build reads ", kVersion);
  CDL_CHECK(r.take<uint16_t>("the flags") == 0, "unknown flags");
  ModelFile f;
  const uint32_t metaBytes = r.take<uint32_t>("the description length");
  CDL_CHECK(metaBytes <= kMaxMetaBytes, "model description of ", metaBytes, " bytes, at most ",
            kMaxMetaBytes);
  const uint8_t* meta = r.takeBytes(metaBytes, "the model description");
  f.meta.assign(reinterpret_cast<const char*>(meta), metaBytes);
  const uint32_t count = r.take<uint32_t>("the tensor count");
  CDL_CHECK(count <= kMaxTensors, count, " tensors, at most ", kMaxTensors);
  std::vector<Entry> entries;
  for (uint32_t i = 0; i < count; ++i) entries.push_back(readEntry(r));
  const size_t headerBytes = static_cast<size_t>(r.pos() - data);
  const uint64_t headerHash = r.take<uint64_t>("the header hash");
  CDL_CHECK(!verifyHashes || headerHash == XXH64(data, headerBytes, 0),
            "header hash mismatch: the header or table of contents is corrupt");
  const auto parsed = nlohmann::json::parse(f.meta, nullptr, false);
  CDL_CHECK(parsed.is_object(), "the model description is not a JSON object");
  readPayload(r, entries, f, decodeStreams, verifyHashes);
  f.fileBytes = len;
  return f;
}

std::vector<uint8_t> decodeSymbols(const ModelTensor& t) {
  const int64_t n = t.numel();
  std::vector<uint8_t> sym(static_cast<size_t>(n));
  const int alphabet = 1 << t.bits;
  if (t.coder == TensorCoder::kRans) {
    kernels::ransDecode(t.coded.data(), t.coded.size(), n, sym.data(), alphabet);
  } else {
    kernels::rowMultisetDecode(t.coded.data(), t.coded.size(), t.rows(), t.cols(), alphabet,
                               sym.data());
  }
  return sym;
}

void dequantize(const ModelTensor& t, float* out) {
  const std::vector<uint8_t> sym = t.symbols.empty() ? decodeSymbols(t) : t.symbols;
  const int lo = t.lowestLevel();
  for (size_t i = 0; i < sym.size(); ++i) out[i] = static_cast<float>(int(sym[i]) + lo) * t.step;
}

}  // namespace cdl::core
