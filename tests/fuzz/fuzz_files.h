// Real files for the fuzz targets whose readers take paths: a scratch folder of the process in
// memory (/dev/shm) where there is one, so that each input costs no disk write.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

#include "tests/support/scratch_dir.h"

namespace cdl::test {

// /dev/shm where it is a folder, else the system's temporary folder.
inline std::filesystem::path memoryTempBase() {
  std::error_code ec;
  return std::filesystem::is_directory("/dev/shm", ec) ? std::filesystem::path("/dev/shm")
                                                       : std::filesystem::temp_directory_path();
}

// Replaces the file at path with data[0..size); aborts on failure (the harness, not the input).
inline void writeInput(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || (size > 0 && std::fwrite(data, 1, size, f) != size)) std::abort();
  std::fclose(f);
}

}  // namespace cdl::test
