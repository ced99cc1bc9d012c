#include "core/run/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "kernels/base/checks.h"
#include "kernels/base/error.h"
#include "kernels/base/knobs.h"

namespace cdl::core {
namespace {

// fsyncs a folder, so that a rename inside it survives a crash. File systems that cannot sync a
// folder (EINVAL) order the rename by themselves.
void syncDir(const std::string& dir) {
  const int fd = CDL_SYS_CHECK(::open(dir.c_str(), O_RDONLY | O_DIRECTORY), "cannot open folder ",
                               dir, " to sync it");
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  CDL_CHECK(rc == 0 || err == EINVAL, "cannot sync folder ", dir, ": ", std::strerror(err));
}

std::string folderOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

void makeDirs(const std::string& path) {
  std::string partial;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    partial = path.substr(0, pos);
    if (partial.empty()) continue;
    if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
      CDL_THROW("cannot create folder ", partial, ": ", std::strerror(errno));
    }
  }
}

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string freeSpace(const std::string& path) {
  struct statvfs fs;
  if (::statvfs(folderOf(path).c_str(), &fs) != 0) return "free space unknown";
  const double mib =
      static_cast<double>(fs.f_bavail) * static_cast<double>(fs.f_frsize) / 1048576.0;
  char text[96];
  std::snprintf(text, sizeof(text), "%.1f MiB free on its file system", mib);
  return text;
}

void writeFileAtomically(const std::string& path,
                         const std::function<void(const ByteSink&)>& produce) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  CDL_CHECK(f != nullptr, "cannot create ", tmp, " to write ", path, ": ", std::strerror(errno));
  int err = 0;  // the first errno of a failed write
  const ByteSink sink = [&](const void* data, size_t n) {
    if (err == 0 && n != 0 && std::fwrite(data, 1, n, f) != n) err = errno != 0 ? errno : EIO;
  };
  try {
    produce(sink);
  } catch (const Error&) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  } catch (const std::exception& e) {
    std::fclose(f);
    std::remove(tmp.c_str());
    CDL_THROW("writing ", path, " failed: ", e.what(), "; the previous file is intact");
  }
  if (err == 0 && std::fflush(f) != 0) err = errno;
  if (err == 0 && ::fsync(fileno(f)) != 0) err = errno;
  if (std::fclose(f) != 0 && err == 0) err = errno;
  if (err != 0) {
    std::remove(tmp.c_str());
    CDL_THROW("writing ", path, " failed: ", std::strerror(err), " (", freeSpace(path),
              "); the previous file is intact");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    std::remove(tmp.c_str());
    CDL_THROW("renaming ", tmp, " to ", path, " failed: ", std::strerror(err),
              "; the previous file is intact");
  }
  syncDir(folderOf(path));
}

void writeFileAtomically(const std::string& path, const std::string& text) {
  writeFileAtomically(path, [&](const ByteSink& sink) { sink(text.data(), text.size()); });
}

AppendFile::AppendFile(const std::string& path) : path_(path) {
  fd_ = CDL_SYS_CHECK(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644),
                      "cannot open ", path, " for writing");
}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

void AppendFile::append(const std::string& text) {
  const off_t before = ::lseek(fd_, 0, SEEK_END);
  // One write() normally takes the whole record; the loop only finishes a short write. A write
  // that fails part way (a full disk) is cut off again, so the file never ends in half a line.
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd_, text.data() + done, text.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    const int err = n < 0 ? errno : EIO;
    if (err == EINTR) continue;
    if (before >= 0 && ::ftruncate(fd_, before) != 0) {
      CDL_THROW("cannot append to ", path_, ": ", std::strerror(err), " (", freeSpace(path_),
                "), and cutting off the partial record failed too");
    }
    CDL_THROW("cannot append to ", path_, ": ", std::strerror(err), " (", freeSpace(path_),
              "); the records before are intact");
  }
  CDL_SYS_CHECK(::fsync(fd_), "cannot sync ", path_);
}

namespace {

void (*&linkReset())() {
  static void (*reset)() = nullptr;
  return reset;
}

}  // namespace

void setLinkResetFault(void (*reset)()) { linkReset() = reset; }

void faultPoint(const char* point, int64_t step) {
  struct Fault {
    std::string point;
    int rank = -1;
    int64_t step = -1;
  };
  // The knob's pattern has checked the form (Note [Knobs]).
  static const std::vector<Fault> faults = [] {
    std::vector<Fault> out;
    const std::string v = knobText(kKnobFault);
    for (size_t at = 0; at < v.size();) {
      const size_t end = std::min(v.find(',', at), v.size());
      const std::string one = v.substr(at, end - at);
      const size_t a = one.find(':'), b = one.rfind(':');
      out.push_back({one.substr(0, a), std::stoi(one.substr(a + 1, b - a - 1)),
                     std::stoll(one.substr(b + 1))});
      at = end + 1;
    }
    return out;
  }();
  for (const Fault& f : faults) {
    if (f.step != step || currentRank() != f.rank) continue;
    // What each kind of fault does at its point: a signal to the rank itself, a hang (0), or a
    // reset of its TCP ring links (-1).
    static const struct {
      const char* prefix;
      const char* what;
      int signal;
    } kinds[] = {{"", "killed", SIGKILL},
                 {"term-", "SIGTERM", SIGTERM},
                 {"stop-", "SIGSTOP", SIGSTOP},
                 {"hang-", "hanging", 0},
                 {"reset-", "resetting its TCP ring links", -1}};
    for (const auto& k : kinds) {
      if (f.point != std::string(k.prefix) + point) continue;
      std::fprintf(stderr, "[rank %d] CDL_FAULT: %s at %s of step %lld\n", f.rank, k.what, point,
                   static_cast<long long>(step));
      std::fflush(stderr);
      if (k.signal == 0) {
        while (true) ::pause();
      }
      if (k.signal < 0) {
        if (linkReset() != nullptr) linkReset()();
        continue;
      }
      ::kill(::getpid(), k.signal);
    }
  }
}

}  // namespace cdl::core
