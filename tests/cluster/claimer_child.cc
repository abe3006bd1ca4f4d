// A node-id claimer in a process of its own, for etcd_node_id_test: the
// test pauses it with SIGSTOP, as a GC pause or VM stall would.
//
//   etcd_claimer_child <endpoints,comma,separated> <prefix> <ttl_s>
//                      <margin_ms> <max_ids>
// Prints "claimed <id> <valid_until_unix_ns>" or "error <message>", then
// answers each "status" line on stdin with
//   "status <held 0|1> <valid_until_unix_ns> <lost 0|1>"
// and exits at end of input.

#include <atomic>
#include <cstdio>
#include <iostream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "service/common/clock.h"
#include "service/etcd/node_id_claimer.h"
#include "tests/cluster/await.h"

int main(int argc, char** argv) {
  using namespace registrar;  // NOLINT: a small test program
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s endpoints prefix ttl_s margin_ms max_ids\n",
                 argv[0]);
    return 2;
  }
  int ttl_s = 0, margin_ms = 0, max_ids = 0;
  if (!absl::SimpleAtoi(argv[3], &ttl_s) ||
      !absl::SimpleAtoi(argv[4], &margin_ms) ||
      !absl::SimpleAtoi(argv[5], &max_ids)) {
    std::fprintf(stderr, "bad numbers\n");
    return 2;
  }
  etcd::ConnectionOptions co;
  co.endpoints = absl::StrSplit(argv[1], ',');
  co.call_timeout = absl::Seconds(2);
  auto conn = etcd::Connection::Create(co);
  if (!conn.ok()) {
    std::printf("error %s\n", std::string(conn.status().message()).c_str());
    return 1;
  }
  SystemClock clock;
  etcd::NodeIdClaimerOptions o;
  o.prefix = argv[2];
  o.ttl = absl::Seconds(ttl_s);
  o.margin = absl::Milliseconds(margin_ms);
  o.max_ids = max_ids;
  o.keepalive_interval = absl::Milliseconds(200);
  o.holder = "child";
  std::atomic<bool> lost{false};
  auto claimer =
      registrar::testing::Call<std::shared_ptr<etcd::NodeIdClaimer>>([&](auto cb) {
        etcd::NodeIdClaimer::Claim(
            *conn, clock, o, [&lost](const absl::Status&) { lost = true; }, cb);
      });
  if (!claimer.ok()) {
    std::printf("error %s\n", std::string(claimer.status().message()).c_str());
    return 1;
  }
  std::printf(
      "claimed %d %lld\n", (*claimer)->id(),
      static_cast<long long>(absl::ToUnixNanos((*claimer)->valid_until())));
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line != "status") continue;
    // Held() first: it is what a minting replica would check.
    const bool held = (*claimer)->Held();
    std::printf(
        "status %d %lld %d\n", held ? 1 : 0,
        static_cast<long long>(absl::ToUnixNanos((*claimer)->valid_until())),
        lost.load() ? 1 : 0);
    std::fflush(stdout);
  }
  return 0;
}
