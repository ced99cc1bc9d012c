// train.device values (Note [Training device], core/train/device.h).
#include <algorithm>
#include <string>

#include "core/config/config.h"
#include "kernels/base/error.h"

namespace cdl::core {

DeviceSpec parseDeviceSpec(const std::string& text) {
  if (text == "auto") return {DeviceSpec::kAuto, -1};
  if (text == "cpu") return {DeviceSpec::kCpu, -1};
  if (text == "cuda") return {DeviceSpec::kCuda, -1};
  const std::string prefix = "cuda:";
  const std::string digits =
      text.compare(0, prefix.size(), prefix) == 0 ? text.substr(prefix.size()) : std::string();
  const bool number =
      !digits.empty() && digits.size() <= 4 &&
      std::all_of(digits.begin(), digits.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
  CDL_CHECK(number && std::stoi(digits) < 1024, "'", text,
            "' is no device: use auto, cpu, cuda or cuda:N (N the GPU's index)");
  return {DeviceSpec::kCuda, std::stoi(digits)};
}

}  // namespace cdl::core
