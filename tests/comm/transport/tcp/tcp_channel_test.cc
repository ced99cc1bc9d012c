// TcpChannel (Note [TCP ring messages]) between in-process ranks joined in a ring by socket
// pairs, as connectTcpRing joins processes: what goes to the next rank and comes from the
// previous one.
#include "comm/transport/tcp/tcp_channel.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "kernels/base/error.h"
#include "tests/support/temp_dir.h"
#include "tests/support/thread_ranks.h"

namespace cdl::comm {
namespace {

using test::errorOf;
constexpr auto kWait = std::chrono::seconds(30);

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// `size` channels, rank r's next being r + 1 (mod size).
std::vector<std::unique_ptr<TcpChannel>> ring(int size) {
  std::vector<TcpRingLinks> links(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) {
    int pair[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
    for (int fd : pair) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
    links[static_cast<size_t>(r)].toNext = pair[0];
    links[static_cast<size_t>((r + 1) % size)].fromPrev = pair[1];
  }
  std::vector<std::unique_ptr<TcpChannel>> channels;
  for (int r = 0; r < size; ++r) {
    channels.push_back(std::make_unique<TcpChannel>(links[static_cast<size_t>(r)], r,
                                                    (r + 1) % size, (r + size - 1) % size));
  }
  return channels;
}

std::vector<uint8_t> pattern(size_t n, int seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i * 31 + seed * 7) % 251);
  return v;
}

// Runs fn(r) for r in [0, size) on a thread each, as ranks do (a channel moves bytes only while
// one of its Works is polled or waited for), and reports what they throw.
using test::onThreadRanks;

// Algorithms in flight together (rings of several buckets) post their receives in any order and
// their messages interleave: each receive gets the message of its own tag, whole, whether it was
// posted before the message came or after, empty and multi-megabyte ones alike.
TEST(TcpChannel, EachReceiveGetsTheMessageOfItsTagWhicheverCameFirst) {
  auto ch = ring(3);
  const std::vector<size_t> sizes = {0, 1, 1000, size_t{5} << 20};
  for (int r = 0; r < 3; ++r) {
    std::vector<std::vector<uint8_t>> out, in(sizes.size());
    for (size_t k = 0; k < sizes.size(); ++k) out.push_back(pattern(sizes[k], int(k) + 10 * r));
    const int next = (r + 1) % 3;
    std::promise<void> posted, sent;
    onThreadRanks(2, [&](int role) {
      std::vector<std::shared_ptr<Work>> works;
      auto receive = [&](uint64_t tag) {
        in[tag].resize(sizes[tag]);
        works.push_back(ch[next]->exchange(nullptr, 0, false, in[tag].data(), sizes[tag], true, tag,
                                           "receive " + std::to_string(tag)));
      };
      if (role == 0) {  // rank `next`: receives for tags 3, 2 before anything is sent, 1, 0 after
        receive(3);
        receive(2);
        posted.set_value();
        sent.get_future().wait();
        receive(1);
        receive(0);
      } else {  // rank r
        posted.get_future().wait();
        for (uint64_t tag : {0, 1, 2, 3}) {
          works.push_back(ch[r]->exchange(out[tag].data(), sizes[tag], true, nullptr, 0, false, tag,
                                          "send " + std::to_string(tag)));
        }
        sent.set_value();
      }
      for (auto& w : works) w->wait(kWait);
    });
    for (size_t k = 0; k < sizes.size(); ++k) {
      EXPECT_EQ(in[k], out[k]) << "rank " << r << " tag " << k;
    }
  }
}

// Messages with one tag are received in the order they were sent.
TEST(TcpChannel, MessagesOfOneTagKeepTheirOrder) {
  auto ch = ring(2);
  std::vector<int> out(50), in(50, -1);
  std::vector<std::shared_ptr<Work>> works;
  for (int i = 0; i < 50; ++i) {
    out[i] = i * i;
    works.push_back(ch[0]->exchange(&out[i], sizeof(int), true, nullptr, 0, false, 7, "send"));
  }
  for (int i = 0; i < 50; ++i) {
    works.push_back(ch[1]->exchange(nullptr, 0, false, &in[i], sizeof(int), true, 7, "receive"));
  }
  for (auto& w : works) w->wait(kWait);
  EXPECT_EQ(in, out);
}

// A ring step: every rank sends to the next and receives from the previous one in one Work.
TEST(TcpChannel, ARingStepMovesEveryRanksChunkToTheNext) {
  for (int size : {1, 2, 4}) {
    auto ch = ring(size);
    std::vector<std::vector<uint8_t>> out(size), in(size);
    onThreadRanks(size, [&](int r) {
      out[r] = pattern(size_t{3} << 20, r);
      in[r].resize(out[r].size());
      ch[r]
          ->exchange(out[r].data(), out[r].size(), true, in[r].data(), in[r].size(), true, 1,
                     "ring step")
          ->wait(kWait);
    });
    for (int r = 0; r < size; ++r) EXPECT_EQ(in[r], out[(r + size - 1) % size]) << "rank " << r;
  }
}

// A message of another length than its receive expects is an error naming both lengths and the
// ranks; the channel is unusable from then on, and says why.
TEST(TcpChannel, ALengthMismatchFailsNamingBothAndEndsTheChannel) {
  auto ch = ring(2);
  std::vector<uint8_t> out(64), in(32);
  auto send = ch[0]->exchange(out.data(), 64, true, nullptr, 0, false, 4, "send");
  auto recv = ch[1]->exchange(nullptr, 0, false, in.data(), 32, true, 4, "the receive");
  send->wait(kWait);
  const std::string e = errorOf([&] { recv->wait(kWait); });
  EXPECT_TRUE(has(e, "rank 0 sent 64 bytes with tag 4 where rank 1 expected 32")) << e;
  const std::string later = errorOf([&] {
    ch[1]->exchange(nullptr, 0, false, in.data(), 32, true, 5, "a later one")->wait(kWait);
  });
  EXPECT_TRUE(has(later, "a later one") && has(later, "expected 32")) << later;
}

// A peer that goes away (its process ended) fails what waits for it, naming the link.
TEST(TcpChannel, APeerThatClosesItsLinkFailsTheReceiveNamingIt) {
  auto ch = ring(3);
  std::vector<uint8_t> in(16);
  auto recv = ch[2]->exchange(nullptr, 0, false, in.data(), 16, true, 9, "the receive");
  ch[1].reset();
  const std::string e = errorOf([&] { recv->wait(kWait); });
  EXPECT_TRUE(has(e, "the TCP link from rank 1 to rank 2 was closed by rank 1")) << e;
}

// An exchange abandoned by a timeout may still have bytes coming for its buffers, so the channel
// ends: the next exchange fails at once naming the abandoned one, and the abandoned buffer is
// never written.
TEST(TcpChannel, AnExchangeAbandonedInFlightEndsTheChannel) {
  auto ch = ring(2);
  std::vector<uint8_t> in(16, 0xAB);
  auto recv = ch[1]->exchange(nullptr, 0, false, in.data(), 16, true, 2, "the slow receive");
  const std::string timeout = errorOf([&] { recv->wait(std::chrono::duration<double>(0.2)); });
  EXPECT_TRUE(has(timeout, "did not complete within")) << timeout;
  std::vector<uint8_t> out(16, 1);
  ch[0]->exchange(out.data(), 16, true, nullptr, 0, false, 2, "the late send")->wait(kWait);
  std::vector<uint8_t> again(16);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string later = errorOf(
      [&] { ch[1]->exchange(nullptr, 0, false, again.data(), 16, true, 3, "next")->wait(kWait); });
  EXPECT_TRUE(has(later, "the slow receive was abandoned in flight")) << later;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  EXPECT_EQ(in, std::vector<uint8_t>(16, 0xAB)) << "the abandoned buffer was written";
}

}  // namespace
}  // namespace cdl::comm
