// Watch slots per tenant and per caller against the real server: a caller
// holding every slot of one tenant leaves other tenants' slots alone, a
// caller at its own bound leaves other callers theirs, refusals are
// RESOURCE_EXHAUSTED naming the limit and its flag, and a closed stream
// frees its slot. A watch from beyond the next revision is OUT_OF_RANGE at
// once instead of hanging.

#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "service/auth/callers_file.h"
#include "tests/integration/own_server_test.h"
#include "tests/integration/test_util.h"

namespace registrar::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// One Watch stream from revision 1 (so it gets every event of its tenant,
// whenever the server registers it).
struct Stream {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<v1::WatchEvent>> reader;
};

class WatchLimitsTest : public OwnServerTest {
 protected:
  void SetUp() override {
    OwnServerTest::SetUp();
    const std::string callers = dir_ + "/callers.json";
    auto entry = [](const std::string& name, const std::string& role,
                    const std::string& tenants) {
      return absl::StrCat(
          "{\"name\": \"", name, "\", \"role\": \"", role, "\", \"tenants\": [",
          tenants, "], \"token_sha256\": [\"", HashToken("t-" + name), "\"]}");
    };
    std::ofstream(callers) << "{\"callers\": ["
                           << entry("admin", "ROLE_ADMIN", "\"*\"") << ", "
                           << entry("greedy", "ROLE_READER",
                                    "\"tenant-a\", \"tenant-b\"")
                           << ", "
                           << entry("other", "ROLE_READER", "\"tenant-b\"")
                           << "]}";
    ASSERT_NO_FATAL_FAILURE(
        Start({"--callers_file=" + callers, "--max_watchers=100",
               "--max_watchers_per_tenant=3", "--max_watchers_per_caller=4"}));
  }

  void Authorize(grpc::ClientContext& ctx, const std::string& caller) {
    ctx.AddMetadata("authorization", "Bearer t-" + caller);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(20 * SanitizerTimeScale()));
  }

  void IssueIn(const std::string& tenant) {
    grpc::ClientContext ctx;
    Authorize(ctx, "admin");
    v1::IssueRequest req;
    req.set_kind(v1::KIND_THREAD);
    *req.mutable_owner() = MakeOwner(tenant, "u1");
    v1::IssueResponse resp;
    const grpc::Status s = stub_->Issue(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  std::unique_ptr<Stream> Open(const std::string& caller,
                               const std::string& tenant) {
    auto stream = std::make_unique<Stream>();
    Authorize(stream->ctx, caller);
    v1::WatchRequest req;
    req.set_start_revision(1);
    req.set_tenant(tenant);
    stream->reader = stub_->Watch(&stream->ctx, req);
    return stream;
  }

  // Admitted: the stream delivers its tenant's first event.
  void ExpectAdmitted(Stream& stream) {
    v1::WatchEvent event;
    ASSERT_TRUE(stream.reader->Read(&event))
        << stream.reader->Finish().error_message();
    EXPECT_GT(event.revision(), 0u);
  }

  // Refused: the stream ends at once; its status.
  grpc::Status Refused(Stream& stream) {
    v1::WatchEvent event;
    EXPECT_FALSE(stream.reader->Read(&event));
    return stream.reader->Finish();
  }
};

TEST_F(WatchLimitsTest, OneTenantOrCallerCannotTakeEverySlot) {
  ASSERT_NO_FATAL_FAILURE(IssueIn("tenant-a"));
  ASSERT_NO_FATAL_FAILURE(IssueIn("tenant-b"));

  // greedy fills tenant-a's 3 slots.
  std::vector<std::unique_ptr<Stream>> greedy_a;
  for (int i = 0; i < 3; ++i) {
    greedy_a.push_back(Open("greedy", "tenant-a"));
    ASSERT_NO_FATAL_FAILURE(ExpectAdmitted(*greedy_a.back()));
  }
  auto fourth = Open("greedy", "tenant-a");
  const grpc::Status tenant_full = Refused(*fourth);
  EXPECT_EQ(tenant_full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(tenant_full.error_message(),
              AllOf(HasSubstr("tenant \"tenant-a\""), HasSubstr("limit 3"),
                    HasSubstr("--max_watchers_per_tenant")));

  // Another tenant is unaffected.
  auto other_b = Open("other", "tenant-b");
  ASSERT_NO_FATAL_FAILURE(ExpectAdmitted(*other_b));

  // greedy reaches its own bound (4) with one of tenant-b...
  auto greedy_b = Open("greedy", "tenant-b");
  ASSERT_NO_FATAL_FAILURE(ExpectAdmitted(*greedy_b));
  auto greedy_b2 = Open("greedy", "tenant-b");
  const grpc::Status caller_full = Refused(*greedy_b2);
  EXPECT_EQ(caller_full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(caller_full.error_message(),
              AllOf(HasSubstr("caller greedy"), HasSubstr("limit 4"),
                    HasSubstr("--max_watchers_per_caller")));
  // ...while another caller of the same tenant still gets a slot.
  auto other_b2 = Open("other", "tenant-b");
  ASSERT_NO_FATAL_FAILURE(ExpectAdmitted(*other_b2));

  // A closed stream frees its slot (once the server has seen it close).
  greedy_a.back()->ctx.TryCancel();
  greedy_a.back()->reader->Finish();
  greedy_a.pop_back();
  std::unique_ptr<Stream> again;
  const bool admitted = PollUntil(
      [&] {
        again = Open("greedy", "tenant-a");
        v1::WatchEvent event;
        if (again->reader->Read(&event)) return true;
        again->reader->Finish();
        return false;
      },
      absl::Seconds(10));
  EXPECT_TRUE(admitted);
  for (auto& s : greedy_a) s->ctx.TryCancel();
  for (auto* s : {other_b.get(), greedy_b.get(), other_b2.get(), again.get()}) {
    s->ctx.TryCancel();
  }
}

TEST_F(WatchLimitsTest, WatchFromBeyondTheNextRevisionIsOutOfRange) {
  ASSERT_NO_FATAL_FAILURE(IssueIn("tenant-a"));
  ASSERT_NO_FATAL_FAILURE(IssueIn("tenant-a"));
  // Far beyond the newest revision N (at least 2; the server may commit
  // bookkeeping of its own meanwhile): refused at once, naming N and N + 1.
  uint64_t newest = 0;
  for (uint64_t start : {uint64_t{1000}, uint64_t{1} << 40}) {
    Stream stream;
    Authorize(stream.ctx, "admin");
    v1::WatchRequest req;
    req.set_start_revision(start);
    stream.reader = stub_->Watch(&stream.ctx, req);
    const grpc::Status s = Refused(stream);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::OUT_OF_RANGE) << start;
    std::smatch m;
    const std::string message = s.error_message();
    ASSERT_TRUE(std::regex_search(
        message, m,
        std::regex(
            R"(beyond the newest revision (\d+); watch from at most (\d+))")))
        << message;
    newest = std::stoull(m[1].str());
    EXPECT_GE(newest, 2u);
    EXPECT_EQ(std::stoull(m[2].str()), newest + 1);
  }
  // The next revision is waited for.
  Stream next;
  Authorize(next.ctx, "admin");
  v1::WatchRequest req;
  req.set_start_revision(newest + 1);
  next.reader = stub_->Watch(&next.ctx, req);
  ASSERT_NO_FATAL_FAILURE(IssueIn("tenant-a"));
  v1::WatchEvent event;
  ASSERT_TRUE(next.reader->Read(&event));
  EXPECT_GE(event.revision(), newest + 1);
  next.ctx.TryCancel();
}

}  // namespace
}  // namespace registrar::testing
