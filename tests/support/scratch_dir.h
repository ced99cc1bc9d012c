#pragma once

// A temporary folder for tests and fuzz targets (no test framework needed).
#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace cdl::test {

// A fresh folder under `base` (the system's temporary folder unless given), removed with all it
// holds on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "cdl_test",
                   const std::filesystem::path& base = std::filesystem::temp_directory_path()) {
    std::string templ = (base / (prefix + "_XXXXXX")).string();
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

}  // namespace cdl::test
