// Overload: while 1,000 channels call at once, a flood of malformed and
// oversize messages arrives and watchers never read, a well-behaved client
// keeps getting answers. Prints that client's p50/p99 during the flood,
// checks the server's resident memory stays under a bound, and that every
// acknowledged ID is still there after a kill -9 and restart.

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "tests/integration/data_dir.h"
#include "tests/integration/test_util.h"

namespace registrar::testing {
namespace {

constexpr int kChannels = 1000;
constexpr int kMaxMessageBytes = 64 << 10;
// The bound the test holds the server to while flooded (its resident
// memory; an idle server with the RocksDB store uses ~40-60 MiB).
constexpr uint64_t kMaxRssBytes = uint64_t{768} << 20;

uint64_t RssBytes(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      uint64_t kb = 0;
      std::string digits;
      for (char c : line) {
        if (c >= '0' && c <= '9') digits += c;
      }
      if (absl::SimpleAtoi(digits, &kb)) return kb * 1024;
    }
  }
  return 0;
}

grpc::ByteBuffer Bytes(const std::string& s) {
  grpc::Slice slice(s);
  return grpc::ByteBuffer(&slice, 1);
}

TEST(OverloadTest, WellBehavedClientIsServedThroughAFlood) {
  TestDir dir("overload");
  ServerProcess::Options options = OptionsFor(dir);
  options.args.insert(
      options.args.end(),
      {absl::StrCat("--max_message_bytes=", kMaxMessageBytes),
       "--watch_max_lag=2000", "--grpc_memory_limit=268435456"});
  auto server = StartOrFail(options);
  ASSERT_NE(server, nullptr);
  const std::string address = server->grpc_address();
  const v1::Owner owner = MakeOwner("acme", "well-behaved");

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> peak_rss{0};
  std::thread sampler([&] {
    while (!stop.load()) {
      const uint64_t rss = RssBytes(server->pid());
      uint64_t seen = peak_rss.load();
      while (rss > seen && !peak_rss.compare_exchange_weak(seen, rss)) {
      }
      // Samples the server process's memory (a real child process) every
      // 50 ms while the flood runs: a sampler's pace, not a wait.
      absl::SleepFor(absl::Milliseconds(50));
    }
  });

  // Slow readers: watch streams that never read while events pour in.
  std::vector<std::unique_ptr<grpc::ClientContext>> watch_contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::WatchEvent>>> watchers;
  auto watch_stub = v1::Registrar::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  for (int i = 0; i < 20; ++i) {
    watch_contexts.push_back(std::make_unique<grpc::ClientContext>());
    v1::WatchRequest req;
    watchers.push_back(watch_stub->Watch(watch_contexts.back().get(), req));
  }

  // 1,000 channels (each its own connection), each making calls: a mix of
  // malformed bytes, oversize messages and valid Issues.
  std::atomic<uint64_t> flood_calls{0}, flood_ok{0};
  std::vector<std::thread> flooders;
  for (int t = 0; t < 4; ++t) {
    flooders.emplace_back([&, t] {
      std::vector<std::shared_ptr<grpc::Channel>> channels;
      for (int c = t; c < kChannels; c += 4) {
        grpc::ChannelArguments args;
        args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
        args.SetInt("registrar.test.channel", c);  // distinct connections
        channels.push_back(grpc::CreateCustomChannel(
            address, grpc::InsecureChannelCredentials(), args));
      }
      const std::string garbage(300, '\xff');
      const std::string oversize(kMaxMessageBytes * 4, 'x');
      int round = 0;
      while (!stop.load()) {
        std::vector<std::future<grpc::Status>> pending;
        std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
        std::vector<std::unique_ptr<grpc::ByteBuffer>> requests, responses;
        for (auto& channel : channels) {
          if (stop.load()) break;
          grpc::GenericStub stub(channel);
          const int kind = round++ % 3;
          std::string payload = kind == 0   ? garbage
                                : kind == 1 ? oversize
                                            : std::string();
          if (kind == 2) {
            v1::IssueRequest req;
            req.set_kind(v1::KIND_THREAD);
            *req.mutable_owner() = MakeOwner("flood", absl::StrCat("u", t));
            payload = req.SerializeAsString();
          }
          contexts.push_back(std::make_unique<grpc::ClientContext>());
          contexts.back()->set_deadline(std::chrono::system_clock::now() +
                                        std::chrono::seconds(10));
          requests.push_back(
              std::make_unique<grpc::ByteBuffer>(Bytes(payload)));
          responses.push_back(std::make_unique<grpc::ByteBuffer>());
          auto promise = std::make_shared<std::promise<grpc::Status>>();
          pending.push_back(promise->get_future());
          stub.UnaryCall(contexts.back().get(), "/registrar.v1.Registrar/Issue",
                         grpc::StubOptions(), requests.back().get(),
                         responses.back().get(),
                         [promise](grpc::Status s) { promise->set_value(s); });
        }
        for (auto& f : pending) {
          ++flood_calls;
          if (f.get().ok()) ++flood_ok;
        }
      }
    });
  }

  // The well-behaved client: Issue then Validate, one at a time, for the
  // length of the flood; every acknowledged ID is kept.
  // Deadline and latency bound scale together under a sanitizer.
  const int scale = SanitizerTimeScale();
  auto client = MakeClient(*server, absl::Seconds(10) * scale);
  std::vector<double> latencies_ms;
  std::vector<std::string> acked;
  int failures = 0;
  std::string first_failure;
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (absl::Now() < until) {
    const absl::Time start = absl::Now();
    absl::StatusOr<std::vector<std::string>> ids =
        client->IssueIds(v1::KIND_THREAD, owner, 1);
    if (!ids.ok()) {
      if (failures++ == 0) first_failure = StatusText(ids.status());
      continue;
    }
    const v1::Verdict verdict = VerdictOf(*client, (*ids)[0], owner);
    latencies_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
    EXPECT_EQ(verdict, v1::VERDICT_VALID);
    acked.push_back((*ids)[0]);
  }
  stop.store(true);
  for (auto& t : flooders) t.join();
  sampler.join();
  for (auto& ctx : watch_contexts) ctx->TryCancel();
  for (auto& w : watchers) w->Finish();

  std::sort(latencies_ms.begin(), latencies_ms.end());
  ASSERT_FALSE(latencies_ms.empty());
  const auto pct = [&](double p) {
    return latencies_ms[std::min(latencies_ms.size() - 1,
                                 static_cast<size_t>(p * latencies_ms.size()))];
  };
  std::printf(
      "overload: well-behaved client %zu Issue+Validate pairs in 10 s, "
      "p50 %.2f ms, p99 %.2f ms, max %.2f ms; flood %llu calls over %d "
      "channels (%llu OK); server peak RSS %.1f MiB (bound %.0f MiB)\n",
      latencies_ms.size(), pct(0.5), pct(0.99), latencies_ms.back(),
      static_cast<unsigned long long>(flood_calls.load()), kChannels,
      static_cast<unsigned long long>(flood_ok.load()),
      peak_rss.load() / 1048576.0, kMaxRssBytes / 1048576.0);
  EXPECT_EQ(failures, 0) << first_failure;
  EXPECT_GT(flood_calls.load(), static_cast<uint64_t>(kChannels));
  EXPECT_GT(flood_ok.load(), 0u);  // the valid third got through too
  EXPECT_LT(peak_rss.load(), kMaxRssBytes);
  // Throughout: the slowest pair took well under the call deadline.
  EXPECT_LT(pct(0.99), 2000.0 * scale);

  // Nothing acknowledged is lost, even across a kill -9.
  ASSERT_NO_FATAL_FAILURE(KillNine(*server));
  auto restarted = StartOrFail(options);
  ASSERT_NE(restarted, nullptr);
  auto after = MakeClient(*restarted);
  ASSERT_GT(acked.size(), 0u) << "nothing was acknowledged: nothing to check";
  for (size_t i = 0; i < acked.size(); i += 100) {
    v1::ValidateRequest req;
    *req.mutable_owner() = owner;
    for (size_t j = i; j < std::min(acked.size(), i + 100); ++j) {
      req.add_items()->set_id(acked[j]);
    }
    auto resp = after->Validate(req);
    ASSERT_TRUE(resp.ok()) << StatusText(resp.status());
    ASSERT_EQ(resp->results_size(), req.items_size());
    for (const auto& r : resp->results()) {
      EXPECT_EQ(r.verdict(), v1::VERDICT_VALID) << r.id();
    }
  }
  EXPECT_EQ(StopServer(*restarted), 0);
}

}  // namespace
}  // namespace registrar::testing
