#pragma once

#include <c10/core/Device.h>

#include <string>

#include "comm/transport/communicator.h"
#include "core/config/config.h"

namespace cdl::core {

// Note [Training device]
// train.device says where a rank's model, optimizer state, batches and evaluation live:
//   cpu      the CPU;
//   cuda:N   GPU N of the rank's machine;
//   cuda     the rank's local GPU: its index among the job's ranks on its machine, modulo the
//            machine's GPUs (torchrun's LOCAL_RANK convention), so ranks spread over the GPUs;
//   auto     cuda when the machine has a GPU and the run can train there, else cpu.
// A split model and CDL quantizers train on the CPU only for now: the config refuses them with
// cuda (checkConfig), and auto takes the CPU for them. A named GPU that the machine lacks, or
// cuda on a machine without one, is an error naming the rank, the device and the key, raised
// before the run folder is made. Each rank logs its choice.
//
// A GPU run keeps its gradients' reduction on the host: the Reducer copies each gradient into
// its host bucket as backward produces it and the averaged bucket back (Note [Reducer]), so
// every transport and codec serves it. Batches travel through pinned host memory with
// non-blocking copies. Checkpoints and .cdlm files hold host tensors whatever the device, so a
// run resumes on another device than the one that wrote it; its arithmetic then differs
// (another kernel library), which the resume's log line says.

// Where spec (a train.device value) puts rank `rank`, the `local`-th rank on its machine, on a
// machine with `gpus` usable GPUs. `gpuCapable`: the run can train on a GPU (auto takes the CPU
// when not). Throws cdl::Error naming the rank, the device and the key.
c10::Device resolveDevice(const std::string& spec, int rank, int local, int gpus, bool gpuCapable);

// The usable CUDA devices of this machine (0 without a GPU, a driver or a CUDA LibTorch).
int cudaDeviceCount();

// Collective over every rank of `world`: resolves cfg's train.device for this rank
// (resolveDevice, with the ranks' local positions from their placements), makes a GPU the
// current one, and logs the choice.
c10::Device trainingDevice(const Config& cfg, comm::Communicator& world);

}  // namespace cdl::core
