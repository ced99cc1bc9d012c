#include "core/train/device.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/train/cores.h"
#include "kernels/base/error.h"
#include "tests/core/train/train_fixture.h"
#include "tests/support/error_of.h"

namespace cdl::core {
namespace {

// Note [Training device]: what each value of train.device resolves to.
TEST(ResolveDevice, EachValueTakesItsDevice) {
  EXPECT_EQ(resolveDevice("cpu", 0, 0, 2, true), c10::Device(c10::kCPU));
  EXPECT_EQ(resolveDevice("auto", 0, 0, 0, true), c10::Device(c10::kCPU));
  EXPECT_EQ(resolveDevice("auto", 0, 0, 2, false), c10::Device(c10::kCPU));
  EXPECT_EQ(resolveDevice("auto", 5, 3, 2, true), c10::Device(c10::kCUDA, 1));
  EXPECT_EQ(resolveDevice("cuda", 5, 2, 4, true), c10::Device(c10::kCUDA, 2));
  EXPECT_EQ(resolveDevice("cuda", 1, 1, 1, true), c10::Device(c10::kCUDA, 0));
  EXPECT_EQ(resolveDevice("cuda:1", 0, 0, 2, true), c10::Device(c10::kCUDA, 1));
}

TEST(ResolveDevice, AGpuTheMachineLacksNamesTheRankTheDeviceAndTheKey) {
  const std::string none = test::errorOf([] { resolveDevice("cuda", 3, 1, 0, true); });
  EXPECT_NE(none.find("rank 3"), std::string::npos) << none;
  EXPECT_NE(none.find("train.device is cuda"), std::string::npos) << none;
  EXPECT_NE(none.find("no usable GPU"), std::string::npos) << none;
  const std::string three = test::errorOf([] { resolveDevice("cuda:3", 0, 0, 1, true); });
  EXPECT_NE(three.find("rank 0"), std::string::npos) << three;
  EXPECT_NE(three.find("train.device is cuda:3"), std::string::npos) << three;
  EXPECT_NE(three.find("has 1 GPU (cuda:0..cuda:0)"), std::string::npos) << three;
}

TEST(ParseDeviceSpec, OnlyTheFourFormsParse) {
  EXPECT_EQ(parseDeviceSpec("cuda:12").index, 12);
  EXPECT_EQ(parseDeviceSpec("cuda").kind, DeviceSpec::kCuda);
  for (const char* bad : {"gpu", "cuda:", "cuda:-1", "cuda:1x", "cuda:99999", "CPU", ""}) {
    const std::string e = test::errorOf([&] { parseDeviceSpec(bad); });
    EXPECT_NE(e.find("is no device"), std::string::npos) << bad << ": " << e;
  }
  const std::string key =
      test::errorOf([] { parseConfig("train: {device: gpu0}\n", "x.yaml", {}); });
  EXPECT_NE(key.find("train.device"), std::string::npos) << key;
  EXPECT_NE(key.find("x.yaml"), std::string::npos) << key;
}

TEST(ParseDeviceSpec, WhatTrainsOnTheCpuOnlyIsRefusedWithCuda) {
  Config split;
  split.train.device = "cuda";
  split.model.split.stages = 2;
  split.model.split.cutAfter = {"fc1"};
  const std::string s = test::errorOf([&] { checkConfig(split); });
  EXPECT_NE(s.find("train.device"), std::string::npos) << s;
  EXPECT_NE(s.find("split model"), std::string::npos) << s;
  Config cdl;
  cdl.train.device = "cuda:0";
  cdl.cdl.mode = "cdl";
  const std::string q = test::errorOf([&] { checkConfig(cdl); });
  EXPECT_NE(q.find("CDL quantizers"), std::string::npos) << q;
}

TEST(LocalRank, RanksCountWithinTheirMachine) {
  const std::vector<Placement> all = {{"a", {}}, {"b", {}}, {"a", {}}, {"b", {}}, {"a", {}}};
  EXPECT_EQ(localRankOf(all, 0).index, 0);
  EXPECT_EQ(localRankOf(all, 2).index, 1);
  EXPECT_EQ(localRankOf(all, 4).index, 2);
  EXPECT_EQ(localRankOf(all, 4).count, 3);
  EXPECT_EQ(localRankOf(all, 3).index, 1);
  EXPECT_EQ(localRankOf(all, 3).count, 2);
}

using DeviceTrainerTest = TrainFixture;

// On a machine without a GPU, cuda fails before the run folder exists, and cpu trains as auto.
TEST_F(DeviceTrainerTest, CudaWithoutAGpuFailsBeforeTheRunFolderAndCpuTrainsAsAuto) {
  if (cudaDeviceCount() > 0) GTEST_SKIP() << "this machine has a GPU";
  Config c = smallConfig("nogpu");
  c.train.device = "cuda";
  const std::string e = test::errorOf([&] { run(c, 2); });
  EXPECT_NE(e.find("train.device is cuda"), std::string::npos) << e;
  EXPECT_NE(e.find("rank "), std::string::npos) << e;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/nogpu"));
  Config cpu = smallConfig("cpu");
  cpu.train.device = "cpu";
  const TrainResult a = run(smallConfig("auto"), 2);
  const TrainResult b = run(cpu, 2);
  EXPECT_EQ(a.testLoss, b.testLoss);
  EXPECT_EQ(a.wireBytes, b.wireBytes);
}

}  // namespace
}  // namespace cdl::core
