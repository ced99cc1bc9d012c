#pragma once

#include <string>

namespace cdl::core {

// The LibTorch this program runs on: "LibTorch 2.11.0 (with CUDA) at /path/to/libtorch_cpu.so".
// The version is the headers' (the one built against), the path the library the loader found, so
// a program and a Python script can be checked to use one torch (Note [LibTorch]).
std::string torchInfo();

}  // namespace cdl::core
