// cdl-bench allreduce: nccl-tests-style sweep of message sizes, plain MPI_Allreduce on fp32
// against cdl's compressed allreduce, measured in the same run.
#include "bench/allreduce_bench.h"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include "bench/bench_util.h"
#include "bench/plot.h"
#include "bench/tcp_ring.h"
#include "comm/reduce/compressed_allreduce.h"
#include "comm/reduce/powersgd.h"
#include "comm/reduce/scheme.h"
#include "comm/transport/mpi_communicator.h"
#include "comm/transport/ring_allreduce.h"
#include "core/files.h"
#include "kernels/base/error.h"
#include "kernels/rng.h"

namespace cdl::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Mean seconds per iteration, the slowest rank's (a collective is as fast as its slowest rank).
double timeIters(int warmup, int iters, const std::function<void()>& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  MPI_Barrier(MPI_COMM_WORLD);
  const auto t0 = Clock::now();
  for (int i = 0; i < iters; ++i) fn();
  double s = std::chrono::duration<double>(Clock::now() - t0).count() / iters;
  MPI_Allreduce(MPI_IN_PLACE, &s, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return s;
}

// The rows of the squarest rows x cols matrix with rows * cols = n and rows <= cols.
int64_t squarestRows(int64_t n) {
  int64_t rows = 1;
  for (int64_t r = 1; r * r <= n; ++r) {
    if (n % r == 0) rows = r;
  }
  return rows;
}

std::string csvText(const std::vector<nlohmann::json>& records) {
  std::string out =
      "codec,bytes,ranks,time_us,algbw_gbps,busbw_gbps,wire_bytes,speedup_vs_fp32,encode_us,"
      "comm_us,decode_us,segment_bytes\n";
  for (const nlohmann::json& r : records) {
    out += csvField(r["codec"].get<std::string>());
    for (const char* k :
         {"bytes", "ranks", "time_us", "algbw_gbps", "busbw_gbps", "wire_bytes", "speedup_vs_fp32",
          "encode_us", "comm_us", "decode_us", "segment_bytes"}) {
      out += "," + (r.contains(k) ? r[k].dump() : std::string());
    }
    out += "\n";
  }
  return out;
}

// busbw and the speed-up over MPI_Allreduce against the message size, a line per codec.
void plotRows(const std::string& png, int ranks, const std::vector<nlohmann::json>& records) {
  Panel busbw{"bus bandwidth", "bytes", "busbw (GB/s)", {}, /*logY=*/false, /*yFromZero=*/true,
              /*logX=*/true};
  Panel speedup{"speed-up over MPI_Allreduce on fp32",
                "bytes",
                "x",
                {},
                /*logY=*/true,
                /*yFromZero=*/false,
                /*logX=*/true};
  for (const nlohmann::json& r : records) {
    const std::string codec = r["codec"].get<std::string>();
    const auto line = [&](Panel& p) -> Series& {
      for (Series& s : p.series) {
        if (s.title == codec) return s;
      }
      p.series.push_back({codec, {}, {}});
      return p.series.back();
    };
    const double bytes = r["bytes"].get<double>();
    line(busbw).x.push_back(bytes);
    line(busbw).y.push_back(r["busbw_gbps"].get<double>());
    line(speedup).x.push_back(bytes);
    line(speedup).y.push_back(r["speedup_vs_fp32"].get<double>());
  }
  plotPanels(png, "cdl-bench allreduce: " + std::to_string(ranks) + " ranks", {busbw, speedup}, 2);
}

}  // namespace

int runAllreduceBench(int* argc, char*** argv, const AllreduceBenchOptions& opt) {
  comm::initMpi(argc, argv);
  auto comm = comm::makeMpiCommunicator();
  const int rank = comm->rank(), size = comm->size();
  const int64_t lo = parseCount(opt.minBytes), hi = parseCount(opt.maxBytes);
  const int64_t segmentBytes = parseCount(opt.segmentBytes);
  CDL_CHECK(lo >= 4 && hi >= lo && opt.factor >= 2 && opt.iters >= 1,
            "allreduce bench: need 4 <= min-bytes <= max-bytes, factor >= 2, iters >= 1");
  // The fp32 algorithm is chosen at the first allreduce of kRingProbeFloats or more (Note
  // [Allreduce choice]), as a training run's first large bucket chooses it: here before the rows,
  // so that the smaller ones too run as they would after that.
  if (size > 2) {
    std::vector<float> probe(static_cast<size_t>(comm::kRingProbeFloats), 0.0f);
    comm->allreduce(probe.data(), comm::kRingProbeFloats)->wait();
  }
  std::vector<nlohmann::json> records;
  std::unique_ptr<TcpRing> tcp;
  if (opt.tcp && size >= 2) tcp = std::make_unique<TcpRing>();
  if (rank == 0 && !opt.json) {
    std::printf(
        "# cdl-bench allreduce: %d ranks, %d iterations (+%d warm-up), slowest rank, pipeline "
        "segments of %s\n",
        size, opt.iters, opt.warmup, opt.segmentBytes.c_str());
    std::printf("%12s  %-28s %11s %10s %10s %14s %9s %9s %9s %9s\n", "bytes", "codec", "time(us)",
                "algbw", "busbw", "wire_bytes", "speedup", "encode", "comm", "decode");
    std::printf("%12s  %-28s %11s %10s %10s %14s %9s %9s %9s %9s\n", "", "", "", "GB/s", "GB/s",
                "per rank", "vs fp32", "us", "us", "us");
  }
  for (int64_t bytes = lo; bytes <= hi; bytes *= opt.factor) {
    const int64_t n = bytes / 4;
    std::vector<float> input = gradientData("laplace", n, 77 + static_cast<uint64_t>(rank));
    std::vector<float> buf(input.size());
    const double fp32 = timeIters(opt.warmup, opt.iters, [&] {
      std::copy(input.begin(), input.end(), buf.begin());
      MPI_Allreduce(MPI_IN_PLACE, buf.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM,
                    MPI_COMM_WORLD);
    });
    // st: the last iteration's split of this rank's time (none for plain MPI_Allreduce).
    auto report = [&](const std::string& name, double t, uint64_t wire,
                      const comm::AllreduceStats* st) {
      const double algbw = static_cast<double>(bytes) / t / 1e9;
      const double busbw = algbw * 2.0 * (size - 1) / size;
      nlohmann::json r = {{"codec", name},       {"bytes", bytes},
                          {"ranks", size},       {"time_us", t * 1e6},
                          {"algbw_gbps", algbw}, {"busbw_gbps", busbw},
                          {"wire_bytes", wire},  {"speedup_vs_fp32", fp32 / t}};
      if (st) {
        r["segment_bytes"] = segmentBytes;
        r["encode_us"] = st->encodeSeconds * 1e6;
        r["comm_us"] = st->commSeconds * 1e6;
        r["decode_us"] = st->decodeSeconds * 1e6;
      }
      records.push_back(r);
      if (rank == 0 && !opt.json) {
        std::printf("%12lld  %-28s %11.1f %10.3f %10.3f %14llu %9.2f",
                    static_cast<long long>(bytes), name.c_str(), t * 1e6, algbw, busbw,
                    static_cast<unsigned long long>(wire), fp32 / t);
        if (st) {
          std::printf(" %9.0f %9.0f %9.0f", st->encodeSeconds * 1e6, st->commSeconds * 1e6,
                      st->decodeSeconds * 1e6);
        }
        std::printf("\n");
        std::fflush(stdout);
      }
    };
    const auto ringWire =
        static_cast<uint64_t>(2.0 * (size - 1) / size * static_cast<double>(bytes));
    report("mpi_allreduce_fp32", fp32, ringWire, nullptr);
    if (tcp) {
      report(kTcpRingRow, timeIters(opt.warmup, opt.iters, [&] { tcp->run(bytes); }), ringWire,
             nullptr);
    }
    for (const std::string& specText : opt.codecs) {
      const comm::SchemeSpec spec = comm::parseSchemeSpec(specText);
      comm::AllreduceStats st;
      if (spec.scheme == comm::SchemeId::kPowerSgd) {
        const int64_t rows = squarestRows(n);
        comm::PowerSgdState state("bench", rows, n / rows);
        comm::PowerSgdOptions psgd;
        psgd.rank = spec.rank;
        const double t = timeIters(opt.warmup, opt.iters, [&] {
          std::copy(input.begin(), input.end(), buf.begin());
          comm::powerSgdAllreduce(*comm, state, buf.data(), rows, n / rows, psgd, &st);
        });
        report(comm::formatSchemeSpec(spec), t, st.wireBytes, &st);
        continue;
      }
      auto codec = comm::makeCodec(spec.codec.codec);
      uint64_t step = 0;
      comm::CompressedAllreduceOptions cao;
      cao.segmentBytes = segmentBytes;
      const double t = timeIters(opt.warmup, opt.iters, [&] {
        std::copy(input.begin(), input.end(), buf.begin());
        cao.roundingKey = kernels::roundingKey(1, step++, 0);
        comm::compressedAllreduce(*comm, *codec, spec.codec.rate, buf.data(), n, cao, &st);
      });
      report(comm::formatSchemeSpec(spec), t, st.wireBytes, &st);
    }
  }
  if (rank == 0 && !comm->allreduceChoice().empty()) {
    std::fprintf(opt.json ? stderr : stdout, "# fp32 allreduce: %s\n",
                 comm->allreduceChoice().c_str());
  }
  if (rank == 0 && opt.json) std::cout << nlohmann::json(records).dump(2) << std::endl;
  if (rank == 0 && !opt.csv.empty()) core::writeFileAtomically(opt.csv, csvText(records));
  if (rank == 0 && !opt.plot.empty()) plotRows(opt.plot, size, records);
  tcp.reset();
  comm.reset();
  comm::finalizeMpi();
  return 0;
}

}  // namespace cdl::bench
