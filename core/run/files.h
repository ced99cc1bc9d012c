#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace cdl::core {

// Note [Atomic writes]
// Every file a run writes whole (config.yaml, summary.json, checkpoints) goes through
// writeFileAtomically: the bytes go to <path>.tmp in the same folder, which is flushed and
// fsynced, renamed over path, and the folder is fsynced. A reader, or a crash at any moment,
// sees either the previous file or the new one, never a torn one. On a failure before the
// rename the temporary file is removed and the previous file is left as it was.

// Creates path and its missing parent folders (as mkdir -p); throws cdl::Error naming the folder
// that cannot be created.
void makeDirs(const std::string& path);

// Whether anything (a file, a folder) exists at path.
bool exists(const std::string& path);

// Appends n bytes to the file being written. A failed write is remembered and reported by
// writeFileAtomically once the producer returns (the sink itself never throws).
using ByteSink = std::function<void(const void* data, size_t n)>;

// Replaces path with the bytes `produce` hands to its sink (Note [Atomic writes]). Throws
// cdl::Error naming the path and the errno text on any failure; a cdl::Error the producer throws
// passes through as it is, any other exception is wrapped in one naming the path.
void writeFileAtomically(const std::string& path,
                         const std::function<void(const ByteSink&)>& produce);
// The same with the whole text at once.
void writeFileAtomically(const std::string& path, const std::string& text);

// A file written by appending records (metrics.jsonl): each append is one write() of the whole
// record followed by fsync, so a crash loses at most the record being written.
class AppendFile {
 public:
  // Opens (creating if needed) path for appending; throws cdl::Error naming it on failure.
  explicit AppendFile(const std::string& path);
  ~AppendFile();
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;

  // Appends text and makes it durable; throws cdl::Error naming the path and the errno text.
  void append(const std::string& text);

 private:
  std::string path_;
  int fd_ = -1;
};

// "N MiB free on its file system" for the folder of path, for errors of a failed write.
std::string freeSpace(const std::string& path);

// Note [Fault points]
// The fault tests (label faults) kill a rank at chosen places with CDL_FAULT=POINT:RANK:STEP
// (Note [Knobs]): "backward" after step STEP's backward pass, while its gradient collectives may
// still be in flight; "checkpoint-write" halfway through writing step STEP's checkpoint, before
// its rename; "after-rename" once that checkpoint is renamed into place, before the ranks
// confirm it. The rank raises SIGKILL on itself there; at term-POINT it sends itself SIGTERM
// instead (Note [Stop signals]), and goes on; at stop-POINT it stops itself with SIGSTOP, and at
// hang-POINT its thread sleeps for ever while the process lives on (a deadlocked data loader),
// the two stalls of Note [Peer status]; at reset-POINT its TCP ring links are reset, as a link
// that drops would (its neighbours get a TCP reset), and it goes on. CDL_FAULT may list several
// faults, separated by commas. Unset, a fault point costs a comparison.
void faultPoint(const char* point, int64_t step);
// What reset-POINT does, set by the program that owns the links (cdl-train: resetting its TCP ring
// links); unset, the fault point only says it was reached.
void setLinkResetFault(void (*reset)());

}  // namespace cdl::core
