// The rest of the base: byte order and the check macros.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "kernels/base/bytes.h"
#include "kernels/base/checks.h"
#include "kernels/base/error.h"

namespace cdl {
namespace {

TEST(Bytes, StoresAreLittleEndianAtAnyAlignment) {
  uint8_t buf[16] = {};
  storeLE<uint32_t>(buf + 1, 0x04030201u);
  EXPECT_EQ(buf[1], 1);
  EXPECT_EQ(buf[2], 2);
  EXPECT_EQ(buf[3], 3);
  EXPECT_EQ(buf[4], 4);
  EXPECT_EQ(loadLE<uint32_t>(buf + 1), 0x04030201u);
  storeLE<uint64_t>(buf + 7, 0x0807060504030201ull);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(buf[7 + i], i + 1);
  storeLE<float>(buf + 3, -1.5f);
  EXPECT_EQ(loadLE<float>(buf + 3), -1.5f);
  storeLE<int64_t>(buf + 5, -2);
  EXPECT_EQ(loadLE<int64_t>(buf + 5), -2);
}

TEST(Bytes, BigEndianReadsForFormatsFromOutside) {
  const uint8_t idxMagic[4] = {0x00, 0x00, 0x08, 0x03};
  EXPECT_EQ(loadBigEndian32(idxMagic), 0x00000803u);
}

TEST(Checks, ErrorsNameTheRankTheLocationAndTheMessage) {
  setThreadRank(3);
  try {
    CDL_CHECK(1 + 1 == 3, "arithmetic is off by ", 1);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind("[rank 3] base_test.cc:", 0), 0u) << m;
    EXPECT_NE(m.find("arithmetic is off by 1"), std::string::npos) << m;
  }
  setThreadRank(-1);
}

TEST(Checks, ErrorBodyDropsTheRankAndLocationOnly) {
  setThreadRank(3);
  try {
    CDL_THROW("checkpoint x.pt: bad: 12");
  } catch (const Error& e) {
    EXPECT_EQ(errorBody(e.what()), "checkpoint x.pt: bad: 12");
  }
  setThreadRank(-1);
  try {
    CDL_THROW("no rank here");
  } catch (const Error& e) {
    EXPECT_EQ(errorBody(e.what()), "no rank here");
  }
  EXPECT_EQ(errorBody("plain text: 5: x"), "plain text: 5: x");
  EXPECT_EQ(errorBody("[rank 1] not a location"), "[rank 1] not a location");
}

TEST(Checks, AFailedSystemCallNamesTheCallAndErrno) {
  try {
    CDL_SYS_CHECK(::open("/nonexistent/cdl", O_RDONLY), "opening the test file");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("opening the test file"), std::string::npos) << m;
    EXPECT_NE(m.find("::open"), std::string::npos) << m;
    EXPECT_NE(m.find("No such file"), std::string::npos) << m;
  }
  const int fd = CDL_SYS_CHECK(::open("/dev/null", O_RDONLY), "opening /dev/null");
  EXPECT_GE(fd, 0);
  ::close(fd);
}

}  // namespace
}  // namespace cdl
