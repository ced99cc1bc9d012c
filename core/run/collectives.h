#pragma once

#include <cstdint>
#include <vector>

#include "comm/transport/communicator.h"

namespace cdl::core {

// Collective: v summed over the ranks, on every rank (for small vectors of statistics).
inline std::vector<float> sumOverRanks(comm::Communicator& c, std::vector<float> v) {
  c.allreduce(v.data(), static_cast<int64_t>(v.size()))->wait();
  return v;
}

}  // namespace cdl::core
