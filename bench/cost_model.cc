#include "bench/cost_model.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "bench/tcp_ring.h"
#include "comm/codec/codec.h"
#include "comm/reduce/scheme_spec.h"
#include "kernels/base/error.h"

namespace cdl::bench {
namespace {

// A scheme's wire bytes on W ranks per byte it sends per fp32 byte (c's factor).
double wireShare(CostKind k, int w) {
  return k == CostKind::kGather ? w - 1.0 : 2.0 * (w - 1.0) / w;
}
double encodeShare(CostKind k, int w) { return k == CostKind::kSummable ? 1.0 + 1.0 / w : 1.0; }
double decodeShare(CostKind k, int w) {
  if (k == CostKind::kSummable) return 2.0 - 1.0 / w;
  return k == CostKind::kGather ? static_cast<double>(w) : 1.0;
}
double steps(CostKind k, int w) {
  if (k == CostKind::kGather) return w - 1.0;
  return (k == CostKind::kPowerSgd ? 4.0 : 2.0) * (w - 1.0);
}

double number(const nlohmann::json& r, size_t i, const char* key, bool required) {
  if (!r.contains(key)) {
    CDL_CHECK(!required, "record ", i, ": no '", key, "'");
    return 0.0;
  }
  CDL_CHECK(r[key].is_number(), "record ", i, ": '", key, "' is not a number");
  const double v = r[key].get<double>();
  CDL_CHECK(std::isfinite(v) && v >= 0.0, "record ", i, ": '", key, "' is ", v);
  return v;
}

}  // namespace

std::vector<MeasuredRow> measuredRows(const nlohmann::json& doc) {
  CDL_CHECK(doc.is_array(), "not a list of cdl-bench allreduce records");
  std::vector<MeasuredRow> rows;
  for (size_t i = 0; i < doc.size(); ++i) {
    const nlohmann::json& r = doc[i];
    CDL_CHECK(r.is_object(), "record ", i, ": not an object");
    CDL_CHECK(r.contains("codec") && r["codec"].is_string(), "record ", i, ": no 'codec'");
    MeasuredRow m;
    m.codec = r["codec"].get<std::string>();
    m.bytes = number(r, i, "bytes", true);
    m.ranks = static_cast<int>(number(r, i, "ranks", true));
    m.seconds = number(r, i, "time_us", true) * 1e-6;
    m.wireBytes = number(r, i, "wire_bytes", true);
    m.encodeSeconds = number(r, i, "encode_us", false) * 1e-6;
    m.decodeSeconds = number(r, i, "decode_us", false) * 1e-6;
    CDL_CHECK(m.ranks >= 2 && m.bytes > 0 && m.seconds > 0, "record ", i,
              ": needs ranks >= 2 and positive bytes and time_us");
    rows.push_back(m);
  }
  return rows;
}

CostKind costKind(const std::string& codec) {
  if (codec == "mpi_allreduce_fp32" || codec == kTcpRingRow) return CostKind::kRing;
  const comm::SchemeSpec spec = comm::parseSchemeSpec(codec);
  if (spec.scheme == comm::SchemeId::kPowerSgd) return CostKind::kPowerSgd;
  const auto c = comm::makeCodec(spec.codec.codec);
  if (c->lossless()) return CostKind::kRing;
  return c->summable() ? CostKind::kSummable : CostKind::kGather;
}

CostFit fitCost(const std::vector<MeasuredRow>& rows) {
  CDL_CHECK(!rows.empty(), "no records to fit");
  const int w0 = rows[0].ranks;
  // Least squares of T = alpha s + w / B over the MPI_Allreduce rows (2 x 2 normal equations).
  double ss = 0, sw = 0, ww = 0, st = 0, wt = 0;
  int ring = 0;
  for (const MeasuredRow& r : rows) {
    CDL_CHECK(r.ranks == w0, "records of ", w0, " and of ", r.ranks,
              " ranks: fit one rank count at a time");
    if (r.codec != "mpi_allreduce_fp32") continue;
    const double s = steps(CostKind::kRing, w0), w = wireShare(CostKind::kRing, w0) * r.bytes;
    ss += s * s, sw += s * w, ww += w * w, st += s * r.seconds, wt += w * r.seconds;
    ++ring;
  }
  CDL_CHECK(ring >= 1, "no mpi_allreduce_fp32 records: the link is fitted on them");
  CostFit fit;
  double inv = 0.0;
  const double det = ss * ww - sw * sw;
  if (ring >= 2 && det > 0) {
    fit.alpha = (st * ww - wt * sw) / det;
    inv = (ss * wt - sw * st) / det;
  }
  if (fit.alpha <= 0.0 || inv <= 0.0) {  // one size, or a fit through a negative latency
    fit.alpha = 0.0;
    inv = wt / ww;
  }
  CDL_CHECK(inv > 0.0 && std::isfinite(inv), "the MPI_Allreduce times fit no positive bandwidth");
  fit.bandwidth = 1.0 / inv;

  for (const MeasuredRow& r : rows) {
    bool known = false;
    for (const SchemeCost& s : fit.schemes) known = known || s.codec == r.codec;
    if (known) continue;
    SchemeCost s;
    s.codec = r.codec;
    s.kind = costKind(r.codec);
    double wire = 0, wireFp32 = 0, enc = 0, encBytes = 0, dec = 0, decBytes = 0;
    for (const MeasuredRow& o : rows) {
      if (o.codec != r.codec) continue;
      wire += o.wireBytes;
      wireFp32 += wireShare(s.kind, w0) * o.bytes;
      enc += o.encodeSeconds;
      encBytes += encodeShare(s.kind, w0) * o.bytes;
      dec += o.decodeSeconds;
      decBytes += decodeShare(s.kind, w0) * o.bytes;
    }
    s.wirePerByte = wire / wireFp32;
    s.encodePerByte = enc / encBytes;
    s.decodePerByte = dec / decBytes;
    fit.schemes.push_back(s);
  }
  return fit;
}

double modelSeconds(const SchemeCost& s, double bytes, int ranks, double alpha, double bandwidth) {
  return steps(s.kind, ranks) * alpha +
         s.wirePerByte * wireShare(s.kind, ranks) * bytes / bandwidth +
         s.encodePerByte * encodeShare(s.kind, ranks) * bytes +
         s.decodePerByte * decodeShare(s.kind, ranks) * bytes;
}

}  // namespace cdl::bench
