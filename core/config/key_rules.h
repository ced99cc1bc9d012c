#pragma once

#include "core/config/config.h"

namespace cdl::core {

// The rules that span keys, part of checkConfig: a config loads key by key, so that a run's
// overrides may change several keys in any order, and the keys that go together are checked
// once it is whole. Throws cdl::Error naming the key at fault and the one it conflicts with.
void checkKeysTogether(const Config& c);

}  // namespace cdl::core
