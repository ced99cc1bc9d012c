// cdl-bench allreduce: nccl-tests-style sweep of message sizes, plain MPI_Allreduce on fp32
// against cdl's compressed allreduce, measured in the same run.
#include "bench/allreduce_bench.h"

#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include "bench/bench_util.h"
#include "bench/plot.h"
#include "bench/records.h"
#include "bench/tcp_ring.h"
#include "comm/reduce/compressed_allreduce.h"
#include "comm/reduce/scheme.h"
#include "comm/transport/mpi/mpi_communicator.h"
#include "comm/transport/ring_allreduce.h"
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

// The rows of one message size: MPI_Allreduce on fp32 first (every row's speed-up is over it),
// then the raw TCP ring and each codec, as records and table lines (rank 0).
class SizeRows {
 public:
  SizeRows(comm::Communicator& comm, const AllreduceBenchOptions& opt, int64_t bytes,
           int64_t segmentBytes, std::vector<nlohmann::json>& records)
      : comm_(comm),
        opt_(opt),
        bytes_(bytes),
        n_(bytes / 4),
        segmentBytes_(segmentBytes),
        records_(records),
        size_(comm.size()),
        input_(gradientData("laplace", n_, 77 + static_cast<uint64_t>(comm.rank()))),
        buf_(input_.size()) {}

  void run(TcpRing* tcp) {
    fp32_ = timeIters(opt_.warmup, opt_.iters, [&] {
      restore();
      MPI_Allreduce(MPI_IN_PLACE, buf_.data(), static_cast<int>(n_), MPI_FLOAT, MPI_SUM,
                    MPI_COMM_WORLD);
    });
    const auto ringWire =
        static_cast<uint64_t>(2.0 * (size_ - 1) / size_ * static_cast<double>(bytes_));
    report("mpi_allreduce_fp32", fp32_, ringWire, nullptr);
    if (tcp) {
      report(kTcpRingRow, timeIters(opt_.warmup, opt_.iters, [&] { tcp->run(bytes_); }), ringWire,
             nullptr);
    }
    for (const std::string& specText : opt_.codecs) runScheme(comm::parseSchemeSpec(specText));
  }

 private:
  void restore() { std::copy(input_.begin(), input_.end(), buf_.begin()); }

  // The scheme as training makes it (makeScheme), over the buffer as the squarest matrix it
  // divides into, without error feedback; PowerSGD keeps its warm start across iterations.
  void runScheme(const comm::SchemeSpec& spec) {
    const int64_t rows = squarestRows(n_);
    comm::SchemeOptions so;
    so.errorFeedback = false;
    so.seed = 1;
    so.segmentBytes = segmentBytes_;
    const auto scheme = comm::makeScheme(spec, {{"bench", 0, 0, rows, n_ / rows}}, so);
    comm::AllreduceStats st;
    uint64_t step = 0;
    const double t = timeIters(opt_.warmup, opt_.iters, [&] {
      restore();
      scheme->reduce(comm_, buf_.data(), 0, step++, &st);
    });
    report(comm::formatSchemeSpec(spec), t, st.wireBytes, &st);
  }

  // st: the last iteration's split of this rank's time (none for plain MPI_Allreduce).
  void report(const std::string& name, double t, uint64_t wire, const comm::AllreduceStats* st) {
    const double algbw = static_cast<double>(bytes_) / t / 1e9;
    const double busbw = algbw * 2.0 * (size_ - 1) / size_;
    nlohmann::json r = {{"codec", name},       {"bytes", bytes_},
                        {"ranks", size_},      {"time_us", t * 1e6},
                        {"algbw_gbps", algbw}, {"busbw_gbps", busbw},
                        {"wire_bytes", wire},  {"speedup_vs_fp32", fp32_ / t}};
    if (st) {
      r["segment_bytes"] = segmentBytes_;
      r["encode_us"] = st->encodeSeconds * 1e6;
      r["comm_us"] = st->commSeconds * 1e6;
      r["decode_us"] = st->decodeSeconds * 1e6;
    }
    records_.push_back(r);
    if (comm_.rank() != 0 || opt_.sink.json) return;
    std::printf("%12lld  %-28s %11.1f %10.3f %10.3f %14llu %9.2f", static_cast<long long>(bytes_),
                name.c_str(), t * 1e6, algbw, busbw, static_cast<unsigned long long>(wire),
                fp32_ / t);
    if (st) {
      std::printf(" %9.0f %9.0f %9.0f", st->encodeSeconds * 1e6, st->commSeconds * 1e6,
                  st->decodeSeconds * 1e6);
    }
    std::printf("\n");
    std::fflush(stdout);
  }

  comm::Communicator& comm_;
  const AllreduceBenchOptions& opt_;
  int64_t bytes_, n_, segmentBytes_;
  std::vector<nlohmann::json>& records_;
  int size_;
  std::vector<float> input_, buf_;
  double fp32_ = 0.0;
};

void printHeader(const AllreduceBenchOptions& opt, int size) {
  std::printf(
      "# cdl-bench allreduce: %d ranks, %d iterations (+%d warm-up), slowest rank, pipeline "
      "segments of %s\n",
      size, opt.iters, opt.warmup, opt.segmentBytes.c_str());
  std::printf("%12s  %-28s %11s %10s %10s %14s %9s %9s %9s %9s\n", "bytes", "codec", "time(us)",
              "algbw", "busbw", "wire_bytes", "speedup", "encode", "comm", "decode");
  std::printf("%12s  %-28s %11s %10s %10s %14s %9s %9s %9s %9s\n", "", "", "", "GB/s", "GB/s",
              "per rank", "vs fp32", "us", "us", "us");
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
  if (rank == 0 && !opt.sink.json) printHeader(opt, size);
  for (int64_t bytes = lo; bytes <= hi; bytes *= opt.factor) {
    SizeRows(*comm, opt, bytes, segmentBytes, records).run(tcp.get());
  }
  if (rank == 0 && !comm->allreduceChoice().empty()) {
    std::fprintf(opt.sink.json ? stderr : stdout, "# fp32 allreduce: %s\n",
                 comm->allreduceChoice().c_str());
  }
  if (rank == 0) {
    emitRecords(opt.sink, records,
                plainColumns({"codec", "bytes", "ranks", "time_us", "algbw_gbps", "busbw_gbps",
                              "wire_bytes", "speedup_vs_fp32", "encode_us", "comm_us", "decode_us",
                              "segment_bytes"}),
                [&](const std::string& png) { plotRows(png, size, records); });
  }
  tcp.reset();
  comm.reset();
  comm::finalizeMpi();
  return 0;
}

}  // namespace cdl::bench
