#include "core/train/torch_info.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <torch/headeronly/version.h>

namespace cdl::core {

std::string torchInfo() {
  std::string s = "LibTorch " + std::to_string(TORCH_VERSION_MAJOR) + "." +
                  std::to_string(TORCH_VERSION_MINOR) + "." + std::to_string(TORCH_VERSION_PATCH);
#if CDL_TORCH_CUDA
  s += " (with CUDA)";
#else
  s += " (CPU only)";
#endif
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&at::get_num_threads), &info) != 0 &&
      info.dli_fname != nullptr) {
    s += " at ";
    s += info.dli_fname;
  }
  return s;
}

}  // namespace cdl::core
