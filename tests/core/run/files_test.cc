#include "core/run/files.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "kernels/base/error.h"
#include "tests/support/temp_dir.h"

namespace cdl::core {
namespace {

using ::testing::HasSubstr;

class FilesTest : public ::testing::Test {
 protected:
  static std::string read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  static std::string errorOf(const std::function<void()>& fn) { return test::errorOf(fn); }

  test::TempDir tmp_{"cdl_files_test"};
  std::string dir_ = tmp_.path();
};

TEST_F(FilesTest, MakeDirsCreatesEveryMissingParentAndAcceptsExistingOnes) {
  const std::string deep = dir_ + "/a/b/c";
  makeDirs(deep);
  EXPECT_TRUE(exists(deep));
  makeDirs(deep);  // again: nothing to do
  EXPECT_TRUE(exists(dir_ + "/a/b"));
  EXPECT_FALSE(exists(dir_ + "/a/x"));
}

TEST_F(FilesTest, AtomicWriteReplacesTheFileAndLeavesNoTempFile) {
  const std::string path = dir_ + "/summary.json";
  writeFileAtomically(path, "old\n");
  writeFileAtomically(path, "new\n");
  EXPECT_EQ(read(path), "new\n");
  EXPECT_FALSE(exists(path + ".tmp"));
}

TEST_F(FilesTest, AWriterCallbackStreamsItsBytesInOrder) {
  const std::string path = dir_ + "/ckpt.pt";
  writeFileAtomically(path, [](const ByteSink& sink) {
    sink("ab", 2);
    sink(nullptr, 0);
    sink("cde", 3);
  });
  EXPECT_EQ(read(path), "abcde");
}

// A crash or error in the middle of writing a checkpoint must not cost the previous one.
TEST_F(FilesTest, AFailingWriterLeavesTheOldContentAndNoTempFile) {
  const std::string path = dir_ + "/ckpt.pt";
  writeFileAtomically(path, "old");
  const std::string msg = errorOf([&] {
    writeFileAtomically(path, [](const ByteSink& sink) {
      sink("partial", 7);
      throw std::runtime_error("serializer broke");
    });
  });
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("serializer broke"));
  EXPECT_EQ(read(path), "old");
  EXPECT_FALSE(exists(path + ".tmp"));
}

TEST_F(FilesTest, AWriteOverAFolderFailsNamingThePathAndTheErrnoTextAndLeavesItIntact) {
  const std::string path = dir_ + "/taken";
  makeDirs(path + "/inner");
  const std::string msg = errorOf([&] { writeFileAtomically(path, "text"); });
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr(std::strerror(EISDIR)));
  EXPECT_TRUE(exists(path + "/inner"));
  EXPECT_FALSE(exists(path + ".tmp"));
}

TEST_F(FilesTest, AWriteIntoAMissingFolderFailsNamingThePathAndTheErrnoText) {
  const std::string path = dir_ + "/missing/config.yaml";
  const std::string msg = errorOf([&] { writeFileAtomically(path, "text"); });
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr(std::strerror(ENOENT)));
  EXPECT_FALSE(exists(path));
}

TEST_F(FilesTest, AppendKeepsEarlierRecordsAcrossOpens) {
  const std::string path = dir_ + "/metrics.jsonl";
  {
    AppendFile f(path);
    f.append("{\"a\":1}\n");
  }
  AppendFile f(path);
  f.append("{\"b\":2}\n");
  EXPECT_EQ(read(path), "{\"a\":1}\n{\"b\":2}\n");
}

TEST_F(FilesTest, AnAppendFileThatCannotBeOpenedIsNamed) {
  const std::string path = dir_ + "/missing/metrics.jsonl";
  const std::string msg = errorOf([&] { AppendFile f(path); });
  EXPECT_THAT(msg, HasSubstr("cannot open " + path + " for writing"));
}

}  // namespace
}  // namespace cdl::core
