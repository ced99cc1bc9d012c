#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace cdl {

// The one exception type every cdl layer throws. Its message reads
// "[rank R] file.cc:LINE: what went wrong" where the rank of the calling thread is known.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Sets the rank that errors raised on the calling thread name (-1 clears it). In-process ranks
// (threads) set their own; an MPI process sets the process-wide default once.
void setThreadRank(int rank);
void setProcessRank(int rank);
// The calling thread's rank, else the process default, else -1.
int currentRank();

// An Error's message without its "[rank R] file.cc:LINE: " prefix, for wrapping in another.
std::string errorBody(const std::string& what);

// The whole content of the file at path; throws cdl::Error "cannot open <what> <path>: ..." or
// "cannot read <what> <path>: ..." with the errno text (a directory opens but fails to read).
std::string readWholeFile(const std::string& path, const std::string& what);

namespace detail {

template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

[[noreturn]] void throwError(const char* file, int line, const std::string& msg);

}  // namespace detail
}  // namespace cdl

// Throws cdl::Error with the location and the streamed message when cond is false.
#define CDL_CHECK(cond, ...)                                                             \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      ::cdl::detail::throwError(__FILE__, __LINE__, ::cdl::detail::concat(__VA_ARGS__)); \
    }                                                                                    \
  } while (0)

// Throws cdl::Error with the location and the streamed message.
#define CDL_THROW(...) \
  ::cdl::detail::throwError(__FILE__, __LINE__, ::cdl::detail::concat(__VA_ARGS__))
