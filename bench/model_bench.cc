// cdl-bench model: the allreduce cost model fitted to measured rows, and its projections (Note
// [Cost model]).
#include "bench/model_bench.h"

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "bench/cost_model.h"
#include "kernels/base/error.h"

namespace cdl::bench {

namespace {

// What the projections take: the fit's latency unless --latency-us, the link's efficiency.
struct Projection {
  double bytes = 0.0, alpha = 0.0, efficiency = 1.0;
};

const SchemeCost& schemeOf(const CostFit& fit, const std::string& codec) {
  for (const SchemeCost& s : fit.schemes) {
    if (s.codec == codec) return s;
  }
  CDL_THROW("no scheme ", codec);
}

// The fit, each measured row beside the model, and the projections, as one JSON object.
nlohmann::json modelJson(const ModelBenchOptions& opt, const std::vector<MeasuredRow>& rows,
                         const CostFit& fit, const Projection& pr) {
  nlohmann::json out = {
      {"ranks", rows[0].ranks},
      {"alpha_us", fit.alpha * 1e6},
      {"bandwidth_gbps", fit.bandwidth / 1e9},
      {"link_efficiency", opt.link.empty() ? nlohmann::json() : nlohmann::json(pr.efficiency)}};
  nlohmann::json measured = nlohmann::json::array(), projected = nlohmann::json::array();
  for (const MeasuredRow& r : rows) {
    const double m =
        modelSeconds(schemeOf(fit, r.codec), r.bytes, r.ranks, fit.alpha, fit.bandwidth);
    measured.push_back({{"codec", r.codec},
                        {"bytes", r.bytes},
                        {"measured_us", r.seconds * 1e6},
                        {"model_us", m * 1e6}});
  }
  for (int w : opt.ranks) {
    for (double g : opt.gbits) {
      const double b = g * 1e9 / 8.0 * pr.efficiency;
      const double ring =
          modelSeconds(schemeOf(fit, "mpi_allreduce_fp32"), pr.bytes, w, pr.alpha, b);
      for (const SchemeCost& s : fit.schemes) {
        const double t = modelSeconds(s, pr.bytes, w, pr.alpha, b);
        projected.push_back({{"ranks", w},
                             {"gbits", g},
                             {"codec", s.codec},
                             {"bytes", pr.bytes},
                             {"ms", t * 1e3},
                             {"speedup_vs_fp32_ring", ring / t}});
      }
    }
  }
  out["measured"] = measured;
  out["projected"] = projected;
  return out;
}

void printModel(const ModelBenchOptions& opt, const std::vector<MeasuredRow>& rows,
                const CostFit& fit, const Projection& pr, const nlohmann::json& out) {
  std::printf("# cdl-bench model: %zu rows of %d ranks from %s\n", rows.size(), rows[0].ranks,
              opt.records.c_str());
  std::printf("# fitted on MPI_Allreduce: latency %.1f us a message, %.4f GB/s", fit.alpha * 1e6,
              fit.bandwidth / 1e9);
  if (!opt.link.empty()) std::printf(" (%.2f of the %s link)", pr.efficiency, opt.link.c_str());
  std::printf("\n%-30s %8s %7s %7s %7s\n", "scheme", "kind", "wire/B", "enc ns", "dec ns");
  for (const SchemeCost& s : fit.schemes) {
    static const char* kKinds[] = {"ring", "summable", "gather", "powersgd"};
    std::printf("%-30s %8s %7.4f %7.3f %7.3f\n", s.codec.c_str(), kKinds[static_cast<int>(s.kind)],
                s.wirePerByte, s.encodePerByte * 1e9, s.decodePerByte * 1e9);
  }
  std::printf("\n# measured against modelled\n%12s  %-30s %12s %12s %8s\n", "bytes", "codec",
              "measured us", "model us", "model/m");
  for (const nlohmann::json& m : out["measured"]) {
    std::printf("%12.0f  %-30s %12.1f %12.1f %8.2f\n", m["bytes"].get<double>(),
                m["codec"].get<std::string>().c_str(), m["measured_us"].get<double>(),
                m["model_us"].get<double>(),
                m["model_us"].get<double>() / m["measured_us"].get<double>());
  }
  std::printf(
      "\n# projected allreduce of %s: ms (speed-up over the fp32 ring), latency %.1f us,"
      " link efficiency %.2f\n%7s %7s",
      opt.bytes.c_str(), pr.alpha * 1e6, pr.efficiency, "ranks", "Gbit/s");
  for (const SchemeCost& s : fit.schemes) std::printf(" %28s", s.codec.c_str());
  std::printf("\n");
  const nlohmann::json& projected = out["projected"];
  for (size_t i = 0; i < projected.size(); i += fit.schemes.size()) {
    std::printf("%7d %7g", projected[i]["ranks"].get<int>(), projected[i]["gbits"].get<double>());
    for (size_t j = 0; j < fit.schemes.size(); ++j) {
      const nlohmann::json& p = projected[i + j];
      char cell[64];
      std::snprintf(cell, sizeof cell, "%.2f (x%.1f)", p["ms"].get<double>(),
                    p["speedup_vs_fp32_ring"].get<double>());
      std::printf(" %28s", cell);
    }
    std::printf("\n");
  }
}

}  // namespace

int runModelBench(const ModelBenchOptions& opt) {
  const nlohmann::json doc = nlohmann::json::parse(readWholeFile(opt.records, "records"), nullptr,
                                                   /*allow_exceptions=*/false);
  CDL_CHECK(!doc.is_discarded(), opt.records, ": not JSON");
  std::vector<MeasuredRow> rows;
  CostFit fit;
  try {
    rows = measuredRows(doc);
    fit = fitCost(rows);
  } catch (const Error& e) {
    CDL_THROW(opt.records, ": ", errorBody(e.what()));
  }
  Projection pr;
  pr.bytes = static_cast<double>(parseCount(opt.bytes));
  CDL_CHECK(pr.bytes >= 4, "--bytes ", opt.bytes, ": at least 4");
  if (!opt.link.empty()) pr.efficiency = fit.bandwidth / parseRate(opt.link);
  pr.alpha = opt.latencyUs >= 0 ? opt.latencyUs * 1e-6 : fit.alpha;
  for (int w : opt.ranks) CDL_CHECK(w >= 2 && w <= (1 << 20), "--ranks ", w, ": 2 to 2^20");
  for (double g : opt.gbits) CDL_CHECK(g > 0 && g <= 1e5, "--gbits ", g, ": above 0, at most 1e5");
  const nlohmann::json out = modelJson(opt, rows, fit, pr);
  if (opt.json) {
    std::cout << out.dump(2) << std::endl;
  } else {
    printModel(opt, rows, fit, pr, out);
  }
  return 0;
}

}  // namespace cdl::bench
