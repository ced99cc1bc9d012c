#pragma once

// Small helpers every test folder shares: a temporary folder and the message of an expected error
// (error_of.h).
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "kernels/base/error.h"
#include "tests/support/error_of.h"
#include "tests/support/scratch_dir.h"

namespace cdl::test {}  // namespace cdl::test
