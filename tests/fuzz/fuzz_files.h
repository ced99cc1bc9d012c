// Real files for the fuzz targets whose readers take paths: a scratch folder of the process, in
// memory (/dev/shm) where there is one, so that each input costs no disk write.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace cdl::test {

// A new folder whose name starts with `prefix`, removed with what it holds when the object goes
// (a harness keeps one as a function-local static, so it goes when the fuzzer exits).
class ScratchFolder {
 public:
  explicit ScratchFolder(const std::string& prefix) {
    struct stat st;
    const bool shm = ::stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode);
    path_ = std::string(shm ? "/dev/shm" : "/tmp") + "/" + prefix + ".XXXXXX";
    if (mkdtemp(path_.data()) == nullptr) std::abort();
  }
  ~ScratchFolder() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchFolder(const ScratchFolder&) = delete;
  ScratchFolder& operator=(const ScratchFolder&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Replaces the file at path with data[0..size); aborts on failure (the harness, not the input).
inline void writeInput(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || (size > 0 && std::fwrite(data, 1, size, f) != size)) std::abort();
  std::fclose(f);
}

}  // namespace cdl::test
