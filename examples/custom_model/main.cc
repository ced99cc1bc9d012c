// custom_model: a LibTorch program with a model of its own whose gradients cdl's Reducer averages
// across MPI ranks, compressed with any codec spec (4-bit qsgd + rANS by default).
//
//   mpirun -np 2 custom_model [--steps N] [--codec SPEC]
//
// Each rank draws its own batches of a teacher-labelled problem (16 features, 4 classes); the
// Reducer averages the gradients in buckets while backward runs, with error feedback. At the end
// the program checks what data parallelism promises: every rank holds bit-identical weights, and
// the model learned. It exits 1 when either fails, 2 on bad arguments.
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "comm/reduce/reducer.h"
#include "comm/reduce/scheme_spec.h"
#include "comm/transport/mpi/mpi_communicator.h"
#include "kernels/base/error.h"

namespace {

struct NetImpl : torch::nn::Module {
  NetImpl()
      : fc1(register_module("fc1", torch::nn::Linear(16, 256))),
        fc2(register_module("fc2", torch::nn::Linear(256, 4))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::relu(fc1(x))); }
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(Net);

// A batch of n examples labelled by a fixed random linear teacher: the same teacher everywhere,
// the examples from `gen` (each rank its own stream).
std::pair<torch::Tensor, torch::Tensor> batch(const torch::Tensor& teacher, int64_t n,
                                              at::Generator& gen) {
  const torch::Tensor x = at::randn({n, 16}, gen);
  return {x, x.matmul(teacher).argmax(1)};
}

struct Args {
  int steps = 40;
  std::string codec = "qsgd:bits=4,entropy=rans";
};

bool parseArgs(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    const bool hasValue = i + 1 < argc;
    if (!std::strcmp(argv[i], "--steps") && hasValue) {
      char* end = nullptr;
      const long v = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || v < 1 || v > 100000) return false;
      a->steps = static_cast<int>(v);
    } else if (!std::strcmp(argv[i], "--codec") && hasValue) {
      a->codec = argv[++i];
    } else {
      return false;
    }
  }
  return true;
}

// Whether every rank's weights equal rank 0's bit for bit (a collective).
bool replicasIdentical(cdl::comm::Communicator& comm, Net& net) {
  const torch::Tensor flat = torch::cat([&] {
    std::vector<torch::Tensor> v;
    for (const auto& p : net->parameters()) v.push_back(p.detach().flatten());
    return v;
  }());
  const auto* bytes = static_cast<const uint8_t*>(flat.data_ptr());
  cdl::Bytes mine(bytes, bytes + flat.numel() * sizeof(float)), root = mine;
  comm.broadcast(&root, 0)->wait();
  float differs = mine == root ? 0.0f : 1.0f;
  comm.allreduce(&differs, 1)->wait();
  return differs == 0.0f;
}

int run(const Args& args) {
  auto comm = cdl::comm::makeMpiCommunicator();
  const int rank = comm->rank();
  torch::manual_seed(0);  // the same initial weights and teacher on every rank
  Net net;
  const torch::Tensor teacher = torch::randn({16, 4});
  auto gen = at::detail::createCPUGenerator(1000 + rank);

  std::vector<std::pair<std::string, at::Tensor>> params;
  for (const auto& p : net->named_parameters()) params.emplace_back(p.key(), p.value());
  cdl::comm::ReducerOptions options;
  options.scheme = cdl::comm::parseSchemeSpec(args.codec);
  options.minCompressNumel = 1024;  // fc1's and fc2's weights compressed, the biases not
  cdl::comm::Reducer reducer(comm, params, options);
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));

  auto [testX, testY] = [&] {
    auto testGen = at::detail::createCPUGenerator(7);
    return batch(teacher, 2048, testGen);
  }();
  auto evaluate = [&] {
    torch::NoGradGuard noGrad;
    const torch::Tensor logits = net->forward(testX);
    return std::pair<double, double>(
        torch::cross_entropy_loss(logits, testY).item<double>(),
        logits.argmax(1).eq(testY).to(torch::kFloat).mean().item<double>());
  };
  const auto [lossBefore, accBefore] = evaluate();

  uint64_t wireBytes = 0, fp32Bytes = 0;
  for (int step = 0; step < args.steps; ++step) {
    auto [x, y] = batch(teacher, 64, gen);
    opt.zero_grad();
    torch::cross_entropy_loss(net->forward(x), y).backward();
    reducer.finalize();  // every parameter's grad is now the average over the ranks
    opt.step();
    wireBytes += reducer.lastStats().wireBytes;
    fp32Bytes += reducer.lastStats().fp32Bytes;
  }

  const auto [lossAfter, accAfter] = evaluate();
  const bool identical = replicasIdentical(*comm, net);
  const bool learned = lossAfter < 0.7 * lossBefore;
  if (rank == 0) {
    std::printf(
        "custom_model: %d ranks, %d steps, codec %s: test loss %.3f -> %.3f, accuracy %.3f -> "
        "%.3f, %llu bytes on the wire (%.1fx less than fp32), replicas %s\n",
        comm->size(), args.steps, args.codec.c_str(), lossBefore, lossAfter, accBefore, accAfter,
        static_cast<unsigned long long>(wireBytes),
        wireBytes ? static_cast<double>(fp32Bytes) / static_cast<double>(wireBytes) : 0.0,
        identical ? "bit-identical" : "DIFFER");
    if (!learned) std::printf("custom_model: the model did not learn\n");
  }
  return identical && learned ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (!parseArgs(argc, argv, &args)) {
    std::fprintf(stderr, "usage: custom_model [--steps 1..100000] [--codec SPEC]\n");
    return 2;
  }
  int rc = 1;
  try {
    cdl::comm::initMpi(&argc, &argv);
    rc = run(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "custom_model: %s\n", e.what());
    cdl::comm::abortMpi(1);
    return 1;
  }
  cdl::comm::finalizeMpi();
  return rc;
}
