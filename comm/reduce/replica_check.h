#pragma once

#include <string>
#include <vector>

#include "comm/transport/communicator.h"

namespace cdl::comm {

// Checks that every rank of comm holds the same items (e.g. one line per parameter: name, shape,
// scheme), in order, as rank 0 — the cross-rank model check (c10d's replica verification). A
// collective: every rank calls it. On a difference every rank throws cdl::Error naming the first
// differing item, both values and the rank:
//   "<what> #i differs between ranks: rank 0 has 'a', rank r has 'b'; <advice>"
// (an item one rank lacks reads "(none)"). timeoutSeconds bounds the exchange (zero or less:
// CDL_COMM_TIMEOUT).
void requireSameOnEveryRank(Communicator& comm, const std::vector<std::string>& items,
                            const std::string& what, const std::string& advice,
                            double timeoutSeconds = 0.0);

}  // namespace cdl::comm
