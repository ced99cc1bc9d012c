#include "core/train/device.h"

#include <ATen/Context.h>
#include <c10/core/DeviceGuard.h>
#include <spdlog/spdlog.h>

#include "core/train/cores.h"
#include "kernels/base/error.h"

namespace cdl::core {

c10::Device resolveDevice(const std::string& spec, int rank, int local, int gpus, bool gpuCapable) {
  const DeviceSpec d = parseDeviceSpec(spec);
  if (d.kind == DeviceSpec::kCpu || (d.kind == DeviceSpec::kAuto && (gpus == 0 || !gpuCapable))) {
    return c10::Device(c10::kCPU);
  }
  CDL_CHECK(gpus > 0, "rank ", rank, ": config key train.device is ", spec,
            ", but this machine has no usable GPU (no device, no driver, or a LibTorch without "
            "CUDA); set train.device to cpu or auto");
  const int index = d.index >= 0 ? d.index : local % gpus;
  CDL_CHECK(index < gpus, "rank ", rank, ": config key train.device is ", spec,
            ", but this machine has ", gpus, " GPU", gpus == 1 ? "" : "s",
            " (cuda:0..cuda:", gpus - 1, ")");
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

int cudaDeviceCount() { return at::hasCUDA() ? static_cast<int>(at::getNumGPUs()) : 0; }

c10::Device trainingDevice(const Config& cfg, comm::Communicator& world) {
  const std::vector<Placement> placements = allPlacements(world);
  const LocalRank local = localRankOf(placements, world.rank());
  const int gpus = cudaDeviceCount();
  const bool gpuCapable = cfg.model.split.stages == 1 && cfg.cdl.mode == "none";
  const c10::Device device =
      resolveDevice(cfg.train.device, world.rank(), local.index, gpus, gpuCapable);
  if (device.is_cuda()) c10::impl::getDeviceGuardImpl(c10::kCUDA)->setDevice(device);
  const std::string why = cfg.train.device != "auto" ? "train.device " + cfg.train.device
                          : gpus == 0                ? "auto: no usable GPU"
                          : !gpuCapable
                              ? "auto: a split model or CDL quantizers train on the CPU"
                              : "auto: local rank " + std::to_string(local.index) + " of " +
                                    std::to_string(gpus) + " GPU" + (gpus == 1 ? "" : "s");
  spdlog::info("device {} ({})", device.str(), why);
  return device;
}

}  // namespace cdl::core
