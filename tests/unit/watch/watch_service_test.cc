// The Watch RPC end to end in one process: RegistrarService with a real
// Registry, MemoryStore and WatchHub behind a real gRPC server on
// 127.0.0.1:0, read with a plain generated stub. Checks what only the
// reactor can get wrong: message conversion, status codes, cancellation
// (the watcher is unregistered) and shutdown.

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "service/api/registrar_service.h"
#include "service/common/clock.h"
#include "service/id/id_generator.h"
#include "service/id/key_ring.h"
#include "service/registry/registry.h"
#include "service/store/memory_store.h"
#include "service/watch/watch_hub.h"
#include "tests/unit/in_process_server.h"

namespace registrar {
namespace {

using ::testing::HasSubstr;

class WatchServiceTest : public ::testing::Test {
 protected:
  WatchServiceTest()
      : keys_(KeyRing::Generate()),
        ids_(clock_, keys_, 0),
        registry_(RegistryOptions{}, clock_, ids_, nullptr, &store_) {}

  void SetUp() override {
    ASSERT_TRUE(registry_.Recover().ok());
    hub_ = std::make_unique<WatchHub>(store_, WatchLimits{.max_watchers = 3});
    service_ = std::make_unique<RegistrarService>(registry_, ApiLimits{},
                                                  nullptr, hub_.get());
    server_ = std::make_unique<testing::InProcessServer>(service_.get());
    ASSERT_TRUE(server_->started());
    stub_ = &server_->stub();
  }

  void TearDown() override {
    // The server's order: hub first, then gRPC, then destroy the hub.
    if (hub_) hub_->Shutdown();
    if (server_) server_->Stop();
    EXPECT_EQ(hub_->watcher_count(), 0u);
  }

  std::vector<std::string> Issue(const std::string& tenant, uint32_t count) {
    IssueSpec spec;
    spec.kind = Kind::kThread;
    spec.owner = Owner{tenant, "alice"};
    spec.count = count;
    absl::StatusOr<std::vector<std::string>> ids = registry_.Issue(spec);
    EXPECT_TRUE(ids.ok()) << ids.status().message();
    return ids.ok() ? *ids : std::vector<std::string>{};
  }

  // Waits until the hub has `n` watchers.
  bool AwaitWatchers(size_t n) {
    return hub_->AwaitWatcherCount(n, absl::Seconds(10));
  }

  FakeClock clock_;
  KeyRing keys_;
  IdGenerator ids_;
  MemoryStore store_;
  Registry registry_;
  std::unique_ptr<WatchHub> hub_;
  std::unique_ptr<RegistrarService> service_;
  std::unique_ptr<testing::InProcessServer> server_;
  v1::Registrar::Stub* stub_ = nullptr;
};

TEST_F(WatchServiceTest, StreamsIssuedAndReleasedRecordsAsMessages) {
  const std::vector<std::string> ids = Issue("acme", 2);
  ASSERT_EQ(ids.size(), 2u);
  CleanupTarget target;
  target.ids = {ids[0]};
  ASSERT_TRUE(registry_.Cleanup(Owner{"acme", "alice"}, target, "done").ok());

  grpc::ClientContext ctx;
  v1::WatchRequest request;
  request.set_start_revision(1);
  auto reader = stub_->Watch(&ctx, request);
  std::vector<v1::WatchEvent> events;
  v1::WatchEvent event;
  while (events.size() < 3 && reader->Read(&event)) events.push_back(event);
  ASSERT_EQ(events.size(), 3u);
  // Revision 1 may be the ID clock's high-water mark (no event); the
  // records' events follow in order.
  EXPECT_LT(events[0].revision(), events[1].revision());
  EXPECT_LT(events[1].revision(), events[2].revision());
  EXPECT_EQ(events[0].type(), v1::EVENT_TYPE_ISSUED);
  EXPECT_EQ(events[0].record().id(), ids[0]);
  EXPECT_EQ(events[0].record().owner().tenant(), "acme");
  EXPECT_EQ(events[0].record().owner().user_id(), "alice");
  EXPECT_EQ(events[0].record().state(), v1::STATE_LIVE);
  EXPECT_EQ(events[0].record().kind(), v1::KIND_THREAD);
  EXPECT_EQ(events[0].record().revision(), events[0].revision());
  EXPECT_EQ(events[1].type(), v1::EVENT_TYPE_ISSUED);
  EXPECT_EQ(events[1].record().id(), ids[1]);
  EXPECT_EQ(events[2].type(), v1::EVENT_TYPE_RELEASED);
  EXPECT_EQ(events[2].record().id(), ids[0]);
  EXPECT_EQ(events[2].record().state(), v1::STATE_RELEASED);
  EXPECT_EQ(events[2].record().end_reason(), "done");

  ctx.TryCancel();
  while (reader->Read(&event)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(AwaitWatchers(0)) << "OnDone must unregister the watcher";
}

TEST_F(WatchServiceTest, TenantFilterAndFromNow) {
  Issue("acme", 3);  // before the watch: not seen
  grpc::ClientContext ctx;
  v1::WatchRequest request;
  request.set_tenant("globex");
  auto reader = stub_->Watch(&ctx, request);
  ASSERT_TRUE(AwaitWatchers(1));
  Issue("acme", 2);
  const std::vector<std::string> globex = Issue("globex", 2);
  v1::WatchEvent event;
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.record().id(), globex[0]);
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.record().id(), globex[1]);
  ctx.TryCancel();
  reader->Finish();
}

TEST_F(WatchServiceTest, ErrorsAtStart) {
  Issue("acme", 20);
  ASSERT_TRUE(store_.CompactEvents(store_.LastRevision() - 5).ok());
  {
    grpc::ClientContext ctx;
    v1::WatchRequest request;
    request.set_start_revision(1);
    auto reader = stub_->Watch(&ctx, request);
    v1::WatchEvent event;
    EXPECT_FALSE(reader->Read(&event));
    const grpc::Status status = reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
    EXPECT_THAT(status.error_message(),
                HasSubstr(absl::StrCat("oldest available revision is ",
                                       store_.OldestRevision())));
  }
  {
    grpc::ClientContext ctx;
    v1::WatchRequest request;
    request.set_tenant(std::string(1, '\x01'));
    auto reader = stub_->Watch(&ctx, request);
    v1::WatchEvent event;
    EXPECT_FALSE(reader->Read(&event));
    EXPECT_EQ(reader->Finish().error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    // max_watchers is 3 here.
    std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
    std::vector<std::unique_ptr<grpc::ClientReader<v1::WatchEvent>>> readers;
    for (int i = 0; i < 3; ++i) {
      contexts.push_back(std::make_unique<grpc::ClientContext>());
      readers.push_back(stub_->Watch(contexts.back().get(), {}));
    }
    ASSERT_TRUE(AwaitWatchers(3));
    grpc::ClientContext ctx;
    auto reader = stub_->Watch(&ctx, {});
    v1::WatchEvent event;
    EXPECT_FALSE(reader->Read(&event));
    EXPECT_EQ(reader->Finish().error_code(),
              grpc::StatusCode::RESOURCE_EXHAUSTED);
    for (auto& c : contexts) c->TryCancel();
    for (auto& r : readers) r->Finish();
    EXPECT_TRUE(AwaitWatchers(0));
  }
}

TEST_F(WatchServiceTest, ShutdownEndsStreamsWithUnavailable) {
  grpc::ClientContext ctx;
  auto reader = stub_->Watch(&ctx, {});
  ASSERT_TRUE(AwaitWatchers(1));
  Issue("acme", 1);
  v1::WatchEvent event;
  ASSERT_TRUE(reader->Read(&event));
  hub_->Shutdown();
  EXPECT_FALSE(reader->Read(&event));
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(), "server is shutting down");
}

}  // namespace
}  // namespace registrar
