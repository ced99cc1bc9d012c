#pragma once

// The message of an expected error, for the tests (gtest or not) of every folder.
#include <functional>
#include <string>

#include "kernels/base/error.h"

namespace cdl::test {

// What errorOf returns when fn throws nothing.
inline constexpr char kNoError[] = "no error";

// The message of the cdl::Error that fn throws, or kNoError: a test that expects an error fails
// naming that none came, and one that expects none compares with kNoError.
inline std::string errorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return kNoError;
}

}  // namespace cdl::test
