#include "core/step/replica.h"

#include <ATen/Context.h>
#include <ATen/core/grad_mode.h>
#include <spdlog/spdlog.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>

#include <algorithm>
#include <mutex>
#include <tuple>

#include "comm/reduce/reducer.h"
#include "core/models/models.h"
#include "core/run/checkpoint.h"
#include "core/run/files.h"
#include "core/step/run_hooks.h"
#include "kernels/base/error.h"

namespace cdl::core {

void broadcastTensors(comm::Communicator& c, const std::vector<at::Tensor>& tensors) {
  at::NoGradGuard noGrad;
  for (const at::Tensor& t : tensors) {
    CDL_CHECK(t.is_contiguous(), "broadcast of a non-contiguous tensor");
    // A device tensor goes through a host copy (Note [Training device]).
    const at::Tensor host = t.device().is_cpu() ? t : t.to(at::kCPU);
    const size_t bytes = host.numel() * host.element_size();
    auto* p = static_cast<uint8_t*>(host.data_ptr());
    Bytes b(p, p + bytes);
    c.broadcast(&b, 0)->wait();
    CDL_CHECK(b.size() == bytes, "rank 0 has a tensor of ", b.size(), " bytes where this rank has ",
              bytes, "; every rank must build the same model");
    std::copy(b.begin(), b.end(), p);
    if (!t.device().is_cpu()) t.copy_(host);
  }
}

std::vector<at::Tensor> optimizerStateTensors(torch::optim::Optimizer& optimizer) {
  std::vector<at::Tensor> out;
  auto& state = optimizer.state();
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) {
      auto it = state.find(optimizerStateKey(p));
      if (it == state.end()) continue;
      torch::optim::OptimizerParamState* s = it->second.get();
      if (auto* sgd = dynamic_cast<torch::optim::SGDParamState*>(s)) {
        if (sgd->momentum_buffer().defined()) out.push_back(sgd->momentum_buffer());
      } else if (auto* adam = dynamic_cast<torch::optim::AdamParamState*>(s)) {
        for (const at::Tensor& t : {adam->exp_avg(), adam->exp_avg_sq(), adam->max_exp_avg_sq()}) {
          if (t.defined()) out.push_back(t);
        }
      }
    }
  }
  return out;
}

std::string saveReplicaCheckpoint(const Replica& r, const std::string& dir, int64_t keep,
                                  TrainState& state) {
  broadcastTensors(r.comm, r.buffers);
  state.schemeState = r.reducer.schemeState();
  state.device = c10::DeviceTypeName(modelDevice(r.model).type(), /*lower_case=*/true);
  for (const RunHook* h : r.hooks) h->save(state);
  {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    state.rngState = gen.get_state();
  }
  const std::string path = saveCheckpoint(dir, r.model, r.optimizer, state);
  spdlog::debug("wrote {}", path);
  faultPoint("after-rename", state.step);
  // A rank that failed to write never joins: the others keep their older checkpoints.
  comm::Communicator& job = r.world != nullptr ? *r.world : r.comm;
  std::vector<float> written{1.0f};
  job.allreduce(written.data(), 1)->wait();
  pruneCheckpoints(dir, state.rank, keep);
  return path;
}

void restoreReplica(const Replica& r, const std::string& path, const std::string& runDir,
                    TrainState& state) {
  const TrainState loaded = loadCheckpoint(path, r.model, r.optimizer);
  CDL_CHECK(loaded.worldSize == state.worldSize, "checkpoint ", path, " is from a run with ",
            loaded.worldSize, " ranks; resume it with as many");
  CDL_CHECK(loaded.rank == state.rank, "checkpoint ", path, " belongs to rank ", loaded.rank,
            ", not to rank ", state.rank);
  CDL_CHECK(loaded.configHash == state.configHash, "checkpoint ", path,
            " was written with a different config; resume with the run's config.yaml (", runDir,
            "/config.yaml)");
  // A plan first: it decides which schemes the saved state belongs to.
  for (RunHook* h : r.hooks) h->restoreBeforeSchemes(loaded);
  r.reducer.restoreSchemeState(loaded.schemeState);
  for (RunHook* h : r.hooks) h->restoreAfterSchemes(loaded);
  r.reducer.setStep(static_cast<uint64_t>(loaded.step));
  const std::string device = c10::DeviceTypeName(modelDevice(r.model).type(), true);
  if (!loaded.device.empty() && loaded.device != device && state.rank == 0) {
    spdlog::warn(
        "{} was written by a run on {}; this one trains on {}, whose kernels round differently, so "
        "it continues the run closely but not bit for bit",
        path, loaded.device, device);
  }
  if (loaded.rngState.defined()) {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(loaded.rngState);
  }
  // The rest of the run's position and counts; the identity fields were checked equal above.
  state = loaded;
}

}  // namespace cdl::core
