#pragma once

// Small helpers every test folder shares: a temporary folder and the message of an expected error.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <functional>
#include <string>
#include <system_error>

#include "kernels/base/error.h"

namespace cdl::test {

// A fresh folder under the system's temporary folder, removed with all it holds on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "cdl_test") {
    std::string templ = (std::filesystem::temp_directory_path() / (prefix + "_XXXXXX")).string();
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed: " + templ);
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

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
