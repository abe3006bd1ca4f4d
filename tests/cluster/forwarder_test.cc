// Forwarder (service/cluster/forwarder.h) between real in-process gRPC
// servers on loopback: a client calls a "follower" generic service whose
// handler forwards the call with Forwarder to a "writer" generic service.
// Checks that the request, reply and status (code, message, binary details)
// pass unchanged, which metadata is passed on and that the call is marked
// forwarded, that the caller's deadline is the forwarded call's, NeverSent
// for a writer nothing listens at versus one that answers UNAVAILABLE, and
// that the channel follows a change of the writer's address.

#include "service/cluster/forwarder.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace registrar::cluster {
namespace {

using Clock = std::chrono::system_clock;

constexpr char kMethod[] = "/test.Writer/Change";
constexpr char kSelf[] = "follower-1.registrar.test:7443";

std::string ToString(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return "<unreadable>";
  std::string out;
  for (const grpc::Slice& s : slices) {
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return out;
}

grpc::ByteBuffer ToBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// Bytes that are not text: every byte value, NULs included, repeated past
// one gRPC slice.
std::string BinaryBytes(int seed) {
  std::string out;
  for (int i = 0; i < 200'000; ++i) {
    out.push_back(static_cast<char>((i * 7 + seed) & 0xff));
  }
  return out;
}

// What the writer saw of one call.
struct Received {
  std::string method;
  std::string request;
  std::multimap<std::string, std::string> metadata;
  Clock::time_point deadline;
  bool was_forwarded = false;
};

// The writer: reads one request, records it, and answers with the reply
// and status the test set.
class WriterService : public grpc::CallbackGenericService {
 public:
  void Answer(std::string reply, grpc::Status status) {
    absl::MutexLock lock(&mu_);
    reply_ = std::move(reply);
    status_ = std::move(status);
  }

  std::vector<Received> received() const {
    absl::MutexLock lock(&mu_);
    return received_;
  }

  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* ctx) override {
    return new Reactor(this, ctx);
  }

 private:
  class Reactor : public grpc::ServerGenericBidiReactor {
   public:
    Reactor(WriterService* service, grpc::GenericCallbackServerContext* ctx)
        : service_(service), ctx_(ctx) {
      StartRead(&request_);
    }

    void OnReadDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request"));
        return;
      }
      Received r;
      r.method = ctx_->method();
      r.request = ToString(request_);
      for (const auto& [key, value] : ctx_->client_metadata()) {
        r.metadata.emplace(std::string(key.data(), key.size()),
                           std::string(value.data(), value.size()));
      }
      r.deadline = ctx_->deadline();
      r.was_forwarded = Forwarder::WasForwarded(*ctx_);
      grpc::Status status;
      {
        absl::MutexLock lock(&service_->mu_);
        service_->received_.push_back(std::move(r));
        reply_ = ToBuffer(service_->reply_);
        status = service_->status_;
      }
      if (status.ok()) {
        StartWriteAndFinish(&reply_, grpc::WriteOptions(), status);
      } else {
        Finish(status);
      }
    }

    void OnDone() override { delete this; }

   private:
    WriterService* const service_;
    grpc::GenericCallbackServerContext* const ctx_;
    grpc::ByteBuffer request_;
    grpc::ByteBuffer reply_;
  };

  mutable absl::Mutex mu_;
  std::string reply_ ABSL_GUARDED_BY(mu_);
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  std::vector<Received> received_ ABSL_GUARDED_BY(mu_);
};

// The follower: forwards every call with the Forwarder to the writer
// address it is given, and answers with what came back.
class FollowerService : public grpc::CallbackGenericService {
 public:
  explicit FollowerService(Forwarder* forwarder) : forwarder_(forwarder) {}

  void set_writer(std::string address) {
    absl::MutexLock lock(&mu_);
    writer_ = std::move(address);
  }
  // The status each Forward's done was given, in order.
  std::vector<grpc::Status> forward_statuses() const {
    absl::MutexLock lock(&mu_);
    return statuses_;
  }
  // Forwarder::WasForwarded on each call's context, in order.
  std::vector<bool> arrived_forwarded() const {
    absl::MutexLock lock(&mu_);
    return arrived_forwarded_;
  }

  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* ctx) override {
    return new Reactor(this, ctx);
  }

 private:
  class Reactor : public grpc::ServerGenericBidiReactor {
   public:
    Reactor(FollowerService* service, grpc::GenericCallbackServerContext* ctx)
        : service_(service), ctx_(ctx) {
      StartRead(&request_);
    }

    void OnReadDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request"));
        return;
      }
      std::string writer;
      {
        absl::MutexLock lock(&service_->mu_);
        service_->arrived_forwarded_.push_back(Forwarder::WasForwarded(*ctx_));
        writer = service_->writer_;
      }
      service_->forwarder_->Forward(
          writer, ctx_->method(), ctx_, request_, &response_,
          [this](const grpc::Status& status) {
            {
              absl::MutexLock lock(&service_->mu_);
              service_->statuses_.push_back(status);
            }
            if (status.ok()) {
              StartWriteAndFinish(&response_, grpc::WriteOptions(), status);
            } else {
              Finish(status);
            }
          });
    }

    void OnDone() override { delete this; }

   private:
    FollowerService* const service_;
    grpc::GenericCallbackServerContext* const ctx_;
    grpc::ByteBuffer request_;
    grpc::ByteBuffer response_;
  };

  Forwarder* const forwarder_;
  mutable absl::Mutex mu_;
  std::string writer_ ABSL_GUARDED_BY(mu_);
  std::vector<grpc::Status> statuses_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> arrived_forwarded_ ABSL_GUARDED_BY(mu_);
};

// A started server on 127.0.0.1 with a picked port; empty address on
// failure.
struct TestServer {
  std::unique_ptr<grpc::Server> server;
  std::string address;
};

TestServer StartServer(grpc::CallbackGenericService* service) {
  TestServer t;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterCallbackGenericService(service);
  t.server = builder.BuildAndStart();
  if (t.server != nullptr && port > 0) {
    t.address = absl::StrCat("127.0.0.1:", port);
  }
  return t;
}

// What the client got back.
struct Reply {
  grpc::Status status;
  std::string body;
};

class ForwarderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    writer_a_ = StartServer(&writer_a_service_);
    ASSERT_FALSE(writer_a_.address.empty());
    writer_b_ = StartServer(&writer_b_service_);
    ASSERT_FALSE(writer_b_.address.empty());
    writer_a_service_.Answer("", grpc::Status::OK);
    writer_b_service_.Answer("", grpc::Status::OK);
    follower_service_.set_writer(writer_a_.address);
    follower_ = StartServer(&follower_service_);
    ASSERT_FALSE(follower_.address.empty());
    stub_ = std::make_unique<grpc::GenericStub>(grpc::CreateChannel(
        follower_.address, grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    for (TestServer* s : {&follower_, &writer_a_, &writer_b_}) {
      if (s->server != nullptr) s->server->Shutdown(deadline);
    }
  }

  // Calls the follower with `request` and `metadata`, with `deadline`.
  Reply CallFollower(
      const std::string& request,
      const std::vector<std::pair<std::string, std::string>>& metadata = {},
      Clock::time_point deadline = Clock::now() + std::chrono::seconds(30)) {
    grpc::ClientContext context;
    context.set_deadline(deadline);
    for (const auto& [key, value] : metadata) context.AddMetadata(key, value);
    grpc::ByteBuffer request_buffer = ToBuffer(request);
    grpc::ByteBuffer response;
    Reply reply;
    absl::Notification done;
    stub_->UnaryCall(&context, kMethod, grpc::StubOptions(), &request_buffer,
                     &response, [&](grpc::Status status) {
                       reply.status = std::move(status);
                       done.Notify();
                     });
    // The deadline ends the call; cancel it should gRPC not.
    if (!done.WaitForNotificationWithTimeout(absl::FromChrono(deadline) -
                                             absl::Now() + absl::Seconds(30))) {
      ADD_FAILURE() << "the call outlived its deadline by 30 s";
      context.TryCancel();
      done.WaitForNotification();
    }
    reply.body = ToString(response);
    return reply;
  }

  WriterService writer_a_service_;
  WriterService writer_b_service_;
  TestServer writer_a_;
  TestServer writer_b_;
  // Longer than any deadline the tests give, shorter than none.
  static constexpr absl::Duration kMaxTime = absl::Seconds(120);
  Forwarder forwarder_{grpc::InsecureChannelCredentials(), kSelf, "", kMaxTime};
  FollowerService follower_service_{&forwarder_};
  TestServer follower_;
  std::unique_ptr<grpc::GenericStub> stub_;
};

TEST_F(ForwarderTest, RequestAndReplyBytesPassUnchanged) {
  const std::string request = BinaryBytes(1);
  const std::string reply = BinaryBytes(2);
  writer_a_service_.Answer(reply, grpc::Status::OK);

  Reply got = CallFollower(request);

  ASSERT_TRUE(got.status.ok()) << got.status.error_message();
  EXPECT_TRUE(got.body == reply)
      << "reply of " << got.body.size() << " bytes differs from the writer's";
  std::vector<Received> received = writer_a_service_.received();
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].method, kMethod);
  EXPECT_TRUE(received[0].request == request)
      << "request of " << received[0].request.size()
      << " bytes differs from the client's";
  ASSERT_EQ(follower_service_.forward_statuses().size(), 1u);
  EXPECT_TRUE(follower_service_.forward_statuses()[0].ok());
}

TEST_F(ForwarderTest, WritersErrorStatusComesBackWithItsDetails) {
  const std::string details("\x00\x01\xff\x08\x12status-details\x00", 20);
  writer_a_service_.Answer("ignored",
                           grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                        "parent 0190-ab is released", details));

  Reply got = CallFollower("change");

  EXPECT_EQ(got.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(got.status.error_message(), "parent 0190-ab is released");
  EXPECT_EQ(got.status.error_details(), details);
  ASSERT_EQ(follower_service_.forward_statuses().size(), 1u);
  const grpc::Status forwarded = follower_service_.forward_statuses()[0];
  EXPECT_EQ(forwarded.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(forwarded.error_message(), "parent 0190-ab is released");
  EXPECT_EQ(forwarded.error_details(), details);
  EXPECT_EQ(writer_a_service_.received().size(), 1u);
}

TEST_F(ForwarderTest, PassesOnIdentityAndTracingAndMarksTheCallForwarded) {
  Reply got = CallFollower(
      "change", {{"authorization", "Bearer t0ken"},
                 {"x-request-id", "req-42"},
                 {"traceparent",
                  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
                 {"x-unrelated", "not for the writer"}});

  ASSERT_TRUE(got.status.ok()) << got.status.error_message();
  std::vector<Received> received = writer_a_service_.received();
  ASSERT_EQ(received.size(), 1u);
  const std::multimap<std::string, std::string>& md = received[0].metadata;
  auto only = [&md](const std::string& key) -> std::string {
    if (md.count(key) != 1) {
      return absl::StrCat("<", md.count(key), " values>");
    }
    return md.find(key)->second;
  };
  EXPECT_EQ(only("authorization"), "Bearer t0ken");
  EXPECT_EQ(only("x-request-id"), "req-42");
  EXPECT_EQ(only("traceparent"),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  EXPECT_EQ(md.count("x-unrelated"), 0u);
  EXPECT_EQ(only(kForwardedHeader), kSelf);
  EXPECT_TRUE(received[0].was_forwarded);
  // The client's call to the follower was not a forwarded one.
  EXPECT_EQ(follower_service_.arrived_forwarded(), std::vector<bool>{false});
}

TEST_F(ForwarderTest, CallersDeadlineIsTheForwardedCallsDeadline) {
  // Far from any default, so that a deadline not passed on (none, or one
  // of gRPC's or the Forwarder's own) cannot match it.
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(77);

  Reply got = CallFollower("change", {}, deadline);

  ASSERT_TRUE(got.status.ok()) << got.status.error_message();
  std::vector<Received> received = writer_a_service_.received();
  ASSERT_EQ(received.size(), 1u);
  // A deadline travels as a timeout, so it moves by the hops' transit time
  // and by the timeout's rounding.
  const auto tolerance = std::chrono::seconds(5);
  EXPECT_GT(received[0].deadline, deadline - tolerance);
  EXPECT_LT(received[0].deadline, deadline + tolerance);
}

TEST_F(ForwarderTest, CallerWithoutDeadlineGetsTheForwardersLimit) {
  grpc::ClientContext context;  // no deadline
  grpc::ByteBuffer request = ToBuffer("change");
  grpc::ByteBuffer response;
  grpc::Status status;
  absl::Notification done;
  const Clock::time_point sent = Clock::now();
  stub_->UnaryCall(&context, kMethod, grpc::StubOptions(), &request, &response,
                   [&](grpc::Status s) {
                     status = std::move(s);
                     done.Notify();
                   });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(60)));

  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<Received> received = writer_a_service_.received();
  ASSERT_EQ(received.size(), 1u);
  // A writer that hangs cannot keep the call open past max_time.
  const Clock::time_point limit = sent + absl::ToChronoSeconds(kMaxTime);
  const auto tolerance = std::chrono::seconds(5);
  EXPECT_GT(received[0].deadline, limit - tolerance);
  EXPECT_LT(received[0].deadline, limit + tolerance);
}

TEST_F(ForwarderTest, NothingListeningIsNeverSent) {
  // A port bound and not listening: a connection to it is refused, and
  // nothing else can take the port while the socket is held.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  follower_service_.set_writer(
      absl::StrCat("127.0.0.1:", ntohs(addr.sin_port)));

  Reply got = CallFollower("change");
  close(fd);

  ASSERT_EQ(follower_service_.forward_statuses().size(), 1u);
  const grpc::Status forwarded = follower_service_.forward_statuses()[0];
  EXPECT_EQ(forwarded.error_code(), grpc::StatusCode::UNAVAILABLE)
      << forwarded.error_message();
  EXPECT_TRUE(Forwarder::NeverSent(forwarded)) << forwarded.error_message();
  EXPECT_EQ(got.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(writer_a_service_.received().empty());
}

TEST_F(ForwarderTest, WriterThatAnswersUnavailableWasSent) {
  writer_a_service_.Answer(
      "", grpc::Status(grpc::StatusCode::UNAVAILABLE, "writer stepping down"));

  Reply got = CallFollower("change");

  ASSERT_EQ(follower_service_.forward_statuses().size(), 1u);
  const grpc::Status forwarded = follower_service_.forward_statuses()[0];
  EXPECT_EQ(forwarded.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(forwarded.error_message(), "writer stepping down");
  EXPECT_FALSE(Forwarder::NeverSent(forwarded));
  EXPECT_EQ(got.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(got.status.error_message(), "writer stepping down");
  EXPECT_EQ(writer_a_service_.received().size(), 1u);
}

TEST_F(ForwarderTest, ChannelFollowsTheWritersAddress) {
  writer_a_service_.Answer("from A", grpc::Status::OK);
  writer_b_service_.Answer("from B", grpc::Status::OK);

  Reply first = CallFollower("one");
  follower_service_.set_writer(writer_b_.address);
  Reply second = CallFollower("two");
  follower_service_.set_writer(writer_a_.address);
  Reply third = CallFollower("three");

  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  ASSERT_TRUE(second.status.ok()) << second.status.error_message();
  ASSERT_TRUE(third.status.ok()) << third.status.error_message();
  EXPECT_EQ(first.body, "from A");
  EXPECT_EQ(second.body, "from B");
  EXPECT_EQ(third.body, "from A");
  std::vector<Received> at_a = writer_a_service_.received();
  std::vector<Received> at_b = writer_b_service_.received();
  ASSERT_EQ(at_a.size(), 2u);
  ASSERT_EQ(at_b.size(), 1u);
  EXPECT_EQ(at_a[0].request, "one");
  EXPECT_EQ(at_b[0].request, "two");
  EXPECT_EQ(at_a[1].request, "three");
  EXPECT_EQ(forwarder_.forwarded(), 3u);
}

}  // namespace
}  // namespace registrar::cluster
