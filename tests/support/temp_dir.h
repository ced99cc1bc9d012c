#pragma once

// Small helpers every test folder shares: a temporary folder and the message of an expected error.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "kernels/base/error.h"
#include "tests/support/scratch_dir.h"

namespace cdl::test {

// The message of the cdl::Error that fn throws ("" and a test failure when it throws none).
inline std::string errorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a cdl::Error";
  return "";
}

}  // namespace cdl::test
