#include "service/metrics/grpc_server_metrics.h"

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "service/metrics/metrics.h"
#include "tests/unit/metrics/http_get.h"
#include "tests/unit/metrics/prometheus_text.h"

namespace registrar {
namespace {

using ::grpc::experimental::ServerRpcInfo;
using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::registrar::testing::FindSample;
using ::registrar::testing::ParsePromText;
using ::registrar::testing::PromLabels;
using ::registrar::testing::PromSample;

constexpr char kHealth[] = "grpc.health.v1.Health";

PromLabels MethodLabels(const std::string& type, const std::string& service,
                        const std::string& method) {
  return {
      {"grpc_type", type}, {"grpc_service", service}, {"grpc_method", method}};
}

PromLabels WithCode(PromLabels labels, const std::string& code) {
  labels.emplace("grpc_code", code);
  return labels;
}

// A callback (reactor) generic service: echoes one message back, except that
// "/test.Echo/Deny" finishes with PERMISSION_DENIED, "/test.Echo/Hang"
// never answers and finishes with CANCELLED when the call is cancelled, and
// "/test.Echo/Stream" echoes every message until the client's stream ends.
class EchoReactor : public grpc::ServerGenericBidiReactor {
 public:
  explicit EchoReactor(grpc::GenericCallbackServerContext* context)
      : method_(context->method()) {
    StartRead(&message_);
  }

  void OnReadDone(bool ok) override {
    if (method_ == "/test.Echo/Hang") return;
    if (method_ == "/test.Echo/Stream") {
      if (ok) {
        StartWrite(&message_);
      } else {
        Finish(grpc::Status::OK);
      }
      return;
    }
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no message"));
    } else if (method_ == "/test.Echo/Deny") {
      Finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "denied"));
    } else {
      StartWriteAndFinish(&message_, grpc::WriteOptions(), grpc::Status::OK);
    }
  }

  void OnWriteDone(bool ok) override {
    if (method_ != "/test.Echo/Stream") return;
    if (ok) {
      StartRead(&message_);
    } else {
      Finish(grpc::Status::CANCELLED);
    }
  }

  void OnCancel() override {
    if (method_ == "/test.Echo/Hang") Finish(grpc::Status::CANCELLED);
  }

  void OnDone() override { delete this; }

 private:
  const std::string method_;
  grpc::ByteBuffer message_;
};

class EchoService : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* context) override {
    return new EchoReactor(context);
  }
};

// A callback server (gRPC's own health service, plus the generic echo
// service) with the metrics interceptor installed.
class GrpcServerMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterCallbackGenericService(&echo_);
    std::vector<
        std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        creators;
    creators.push_back(
        metrics_.MakeServerInterceptorFactory(GrpcMethodsOfService(kHealth)));
    builder.experimental().SetInterceptorCreators(std::move(creators));
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    ASSERT_NE(server_->GetHealthCheckService(), nullptr);
    server_->GetHealthCheckService()->SetServingStatus("registrar.v1.Registrar",
                                                       true);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials());
    health_ = Health::NewStub(channel_);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  grpc::Status Check(const std::string& service) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    HealthCheckRequest request;
    request.set_service(service);
    HealthCheckResponse response;
    return health_->Check(&context, request, &response);
  }

  grpc::Status Echo(
      const std::string& method,
      std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    grpc::GenericStub stub(channel_);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + timeout);
    grpc::Slice slice("ping");
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                   [&done](grpc::Status s) { done.set_value(std::move(s)); });
    return done.get_future().get();
  }

  std::vector<PromSample> Samples() {
    return ParsePromText(metrics_.ExpositionText());
  }

  // Polls until the sample exists with value `want` (the server may record
  // after the client has seen the end of a cancelled call); returns the last
  // value seen.
  std::optional<double> WaitForSample(const std::string& name,
                                      const PromLabels& labels, double want) {
    std::optional<double> value;
    for (int i = 0; i < 200; ++i) {
      value = FindSample(Samples(), name, labels);
      if (value == want) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return value;
  }

  Metrics metrics_;
  EchoService echo_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Health::Stub> health_;
};

TEST(GrpcMethodsOfServiceTest, ReadsMethodsAndTypesFromDescriptors) {
  const std::vector<GrpcMethod> methods = GrpcMethodsOfService(kHealth);
  ASSERT_EQ(methods.size(), 2u);
  EXPECT_EQ(methods[0].full_name, "/grpc.health.v1.Health/Check");
  EXPECT_EQ(methods[0].type, ServerRpcInfo::Type::UNARY);
  EXPECT_EQ(methods[1].full_name, "/grpc.health.v1.Health/Watch");
  EXPECT_EQ(methods[1].type, ServerRpcInfo::Type::SERVER_STREAMING);
  EXPECT_TRUE(GrpcMethodsOfService("no.such.Service").empty());
}

// google.golang.org/grpc/codes' String() of every code, in code order.
TEST(GrpcCodeNameTest, GoNames) {
  const std::vector<std::string> go = {"OK",
                                       "Canceled",
                                       "Unknown",
                                       "InvalidArgument",
                                       "DeadlineExceeded",
                                       "NotFound",
                                       "AlreadyExists",
                                       "PermissionDenied",
                                       "ResourceExhausted",
                                       "FailedPrecondition",
                                       "Aborted",
                                       "OutOfRange",
                                       "Unimplemented",
                                       "Internal",
                                       "Unavailable",
                                       "DataLoss",
                                       "Unauthenticated"};
  ASSERT_EQ(go.size(), 17u);
  for (int code = 0; code < 17; ++code) {
    EXPECT_EQ(GrpcCodeName(static_cast<grpc::StatusCode>(code)), go[code])
        << code;
  }
  EXPECT_EQ(GrpcCodeName(static_cast<grpc::StatusCode>(20)), "Unknown");
}

TEST(GrpcHandlingBucketsTest, PrometheusDefaultBuckets) {
  EXPECT_EQ(
      GrpcHandlingBuckets(),
      (std::vector<double>{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}));
}

TEST_F(GrpcServerMetricsTest, KnownMethodsAreExportedBeforeTheFirstCall) {
  const std::vector<PromSample> s = Samples();
  const PromLabels check = MethodLabels("unary", kHealth, "Check");
  const PromLabels watch = MethodLabels("server_stream", kHealth, "Watch");
  EXPECT_EQ(FindSample(s, "grpc_server_started_total", check), 0);
  EXPECT_EQ(FindSample(s, "grpc_server_started_total", watch), 0);
  EXPECT_EQ(FindSample(s, "grpc_server_handling_seconds_count", check), 0);
  EXPECT_EQ(FindSample(s, "grpc_server_msg_received_total", check), 0);
  EXPECT_EQ(FindSample(s, "grpc_server_msg_sent_total", check), 0);
  EXPECT_EQ(FindSample(s, "grpc_server_msg_sent_total", watch), 0);
  for (int code = 0; code <= 16; ++code) {
    const std::string name(GrpcCodeName(static_cast<grpc::StatusCode>(code)));
    EXPECT_EQ(FindSample(s, "grpc_server_handled_total", WithCode(check, name)),
              0)
        << name;
  }
}

TEST_F(GrpcServerMetricsTest, HealthCheckCallsAreCountedByCode) {
  EXPECT_TRUE(Check("").ok());
  EXPECT_TRUE(Check("").ok());
  EXPECT_TRUE(Check("registrar.v1.Registrar").ok());
  EXPECT_EQ(Check("no.such.Service").error_code(), grpc::StatusCode::NOT_FOUND);

  // Scrape over HTTP, the way Prometheus does.
  ASSERT_TRUE(metrics_.Serve("127.0.0.1:0").ok());
  absl::StatusOr<testing::HttpResponse> response =
      testing::HttpGet("127.0.0.1", metrics_.bound_port(), "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  const std::vector<PromSample> s = ParsePromText(response->body);

  const PromLabels check = MethodLabels("unary", kHealth, "Check");
  EXPECT_EQ(FindSample(s, "grpc_server_started_total", check), 4);
  EXPECT_EQ(FindSample(s, "grpc_server_handled_total", WithCode(check, "OK")),
            3);
  EXPECT_EQ(
      FindSample(s, "grpc_server_handled_total", WithCode(check, "NotFound")),
      1);
  EXPECT_EQ(FindSample(s, "grpc_server_handled_total",
                       WithCode(check, "InvalidArgument")),
            0);
  // One request read per call; a reply only for the three that succeeded.
  EXPECT_EQ(FindSample(s, "grpc_server_msg_received_total", check), 4);
  EXPECT_EQ(FindSample(s, "grpc_server_msg_sent_total", check), 3);
  EXPECT_EQ(FindSample(s, "grpc_server_handling_seconds_count", check), 4);
  PromLabels inf = check;
  inf.emplace("le", "+Inf");
  EXPECT_EQ(FindSample(s, "grpc_server_handling_seconds_bucket", inf), 4);
  const std::optional<double> sum =
      FindSample(s, "grpc_server_handling_seconds_sum", check);
  ASSERT_TRUE(sum.has_value());
  EXPECT_GT(*sum, 0);
  EXPECT_LT(*sum, 10);
  // Buckets: 5ms .. 10s.
  PromLabels first = check;
  first.emplace("le", "0.005");
  EXPECT_TRUE(
      FindSample(s, "grpc_server_handling_seconds_bucket", first).has_value());
  PromLabels last = check;
  last.emplace("le", "10");
  EXPECT_EQ(FindSample(s, "grpc_server_handling_seconds_bucket", last), 4);
}

// go-grpc-prometheus counts a unary call's reply when the handler returns
// OK, with the call's code: once a client has its reply, the reply is
// counted, as the call is. Counted after gRPC had written it instead, a
// scrape between the two saw the call handled and its reply not sent yet.
TEST_F(GrpcServerMetricsTest, UnaryReplyIsCountedByTheTimeTheClientHasIt) {
  const PromLabels check = MethodLabels("unary", kHealth, "Check");
  constexpr int kCalls = 200;
  int behind = 0;
  for (int i = 1; i <= kCalls; ++i) {
    ASSERT_TRUE(Check("").ok());
    const std::vector<PromSample> s = Samples();
    if (FindSample(s, "grpc_server_msg_sent_total", check) != i) ++behind;
    ASSERT_EQ(FindSample(s, "grpc_server_handled_total", WithCode(check, "OK")),
              i);
  }
  EXPECT_EQ(behind, 0) << "of " << kCalls << " replies";
}

TEST_F(GrpcServerMetricsTest, CallbackGenericServiceGetsSeriesOnFirstCall) {
  const PromLabels ping = MethodLabels("bidi_stream", "test.Echo", "Ping");
  const PromLabels deny = MethodLabels("bidi_stream", "test.Echo", "Deny");
  EXPECT_FALSE(
      FindSample(Samples(), "grpc_server_started_total", ping).has_value());

  EXPECT_TRUE(Echo("/test.Echo/Ping").ok());
  EXPECT_TRUE(Echo("/test.Echo/Ping").ok());
  EXPECT_EQ(Echo("/test.Echo/Deny").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  const std::vector<PromSample> s = Samples();
  EXPECT_EQ(FindSample(s, "grpc_server_started_total", ping), 2);
  EXPECT_EQ(FindSample(s, "grpc_server_handled_total", WithCode(ping, "OK")),
            2);
  EXPECT_EQ(FindSample(s, "grpc_server_handling_seconds_count", ping), 2);
  EXPECT_EQ(FindSample(s, "grpc_server_started_total", deny), 1);
  EXPECT_EQ(FindSample(s, "grpc_server_handled_total",
                       WithCode(deny, "PermissionDenied")),
            1);
  EXPECT_EQ(FindSample(s, "grpc_server_handled_total", WithCode(deny, "OK")),
            0);
  EXPECT_EQ(FindSample(s, "grpc_server_msg_received_total", ping), 2);
  EXPECT_EQ(FindSample(s, "grpc_server_msg_sent_total", ping), 2);
  EXPECT_EQ(FindSample(s, "grpc_server_msg_received_total", deny), 1);
  EXPECT_EQ(FindSample(s, "grpc_server_msg_sent_total", deny), 0);
}

// Every message of a stream is counted, in each direction.
TEST_F(GrpcServerMetricsTest, StreamMessagesAreCountedOneByOne) {
  const PromLabels stream = MethodLabels("bidi_stream", "test.Echo", "Stream");
  grpc::GenericStub stub(channel_);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(&context, "/test.Echo/Stream", &cq);
  void* tag = nullptr;
  bool ok = false;
  auto step = [&](intptr_t want) {
    ASSERT_TRUE(cq.Next(&tag, &ok));
    ASSERT_EQ(reinterpret_cast<intptr_t>(tag), want);
  };
  call->StartCall(reinterpret_cast<void*>(1));
  step(1);
  ASSERT_TRUE(ok);
  constexpr int kMessages = 3;
  for (int i = 0; i < kMessages; ++i) {
    grpc::Slice slice("m" + std::to_string(i));
    grpc::ByteBuffer out(&slice, 1);
    call->Write(out, reinterpret_cast<void*>(2));
    step(2);
    ASSERT_TRUE(ok) << i;
    grpc::ByteBuffer in;
    call->Read(&in, reinterpret_cast<void*>(3));
    step(3);
    ASSERT_TRUE(ok) << i;
  }
  call->WritesDone(reinterpret_cast<void*>(4));
  step(4);
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  step(5);
  EXPECT_TRUE(status.ok()) << status.error_message();
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }

  EXPECT_EQ(
      WaitForSample("grpc_server_handled_total", WithCode(stream, "OK"), 1), 1);
  const std::vector<PromSample> s = Samples();
  EXPECT_EQ(FindSample(s, "grpc_server_started_total", stream), 1);
  EXPECT_EQ(FindSample(s, "grpc_server_msg_received_total", stream), kMessages);
  EXPECT_EQ(FindSample(s, "grpc_server_msg_sent_total", stream), kMessages);
}

// A call the client cancels is counted as Canceled, whatever the server
// finished it with: gRPC's health Watch reactor finishes a cancelled call
// with UNKNOWN, which no client ever sees.
TEST_F(GrpcServerMetricsTest, ClientCancelledWatchIsCountedAsCanceled) {
  const PromLabels watch = MethodLabels("server_stream", kHealth, "Watch");
  {
    grpc::ClientContext context;
    HealthCheckRequest request;
    request.set_service("registrar.v1.Registrar");
    std::unique_ptr<grpc::ClientReader<HealthCheckResponse>> reader =
        health_->Watch(&context, request);
    HealthCheckResponse response;
    ASSERT_TRUE(reader->Read(&response));
    EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
    EXPECT_EQ(FindSample(Samples(), "grpc_server_started_total", watch), 1);
    EXPECT_EQ(FindSample(Samples(), "grpc_server_msg_received_total", watch),
              1);
    EXPECT_EQ(WaitForSample("grpc_server_msg_sent_total", watch, 1), 1);
    // Still running: not handled yet.
    EXPECT_EQ(
        FindSample(Samples(), "grpc_server_handling_seconds_count", watch), 0);
    context.TryCancel();
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  EXPECT_EQ(WaitForSample("grpc_server_handling_seconds_count", watch, 1), 1);
  const std::vector<PromSample> s = Samples();
  EXPECT_EQ(
      FindSample(s, "grpc_server_handled_total", WithCode(watch, "Canceled")),
      1);
  EXPECT_EQ(
      FindSample(s, "grpc_server_handled_total", WithCode(watch, "Unknown")),
      0);
  EXPECT_EQ(FindSample(s, "grpc_server_handled_total", WithCode(watch, "OK")),
            0);
}

// A call whose deadline passed is counted as DeadlineExceeded, though the
// reactor finished it with CANCELLED in OnCancel.
TEST_F(GrpcServerMetricsTest, CallPastItsDeadlineIsCountedAsDeadlineExceeded) {
  const PromLabels hang = MethodLabels("bidi_stream", "test.Echo", "Hang");
  EXPECT_EQ(
      Echo("/test.Echo/Hang", std::chrono::milliseconds(100)).error_code(),
      grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(WaitForSample("grpc_server_handled_total",
                          WithCode(hang, "DeadlineExceeded"), 1),
            1);
  const std::vector<PromSample> s = Samples();
  EXPECT_EQ(FindSample(s, "grpc_server_started_total", hang), 1);
  EXPECT_EQ(
      FindSample(s, "grpc_server_handled_total", WithCode(hang, "Canceled")),
      0);
  const std::optional<double> sum =
      FindSample(s, "grpc_server_handling_seconds_sum", hang);
  ASSERT_TRUE(sum.has_value());
  EXPECT_GE(*sum, 0.05);  // measured from the start of the call
}

TEST_F(GrpcServerMetricsTest, UnknownMethodNamesAreCapped) {
  const int n = kMaxDynamicGrpcMethods + 6;
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(Echo("/test.Many/M" + std::to_string(i)).ok()) << i;
  }
  const std::vector<PromSample> s = Samples();
  for (int i = 0; i < n; ++i) {
    const std::optional<double> started = FindSample(
        s, "grpc_server_started_total",
        MethodLabels("bidi_stream", "test.Many", "M" + std::to_string(i)));
    if (i < kMaxDynamicGrpcMethods) {
      EXPECT_EQ(started, 1) << i;
    } else {
      EXPECT_FALSE(started.has_value()) << i;
    }
  }
  const PromLabels unknown = MethodLabels("bidi_stream", "unknown", "unknown");
  EXPECT_EQ(FindSample(s, "grpc_server_started_total", unknown), 6);
  EXPECT_EQ(FindSample(s, "grpc_server_handled_total", WithCode(unknown, "OK")),
            6);
  // Known methods are unaffected by the cap.
  EXPECT_TRUE(Check("").ok());
  EXPECT_EQ(FindSample(Samples(), "grpc_server_started_total",
                       MethodLabels("unary", kHealth, "Check")),
            1);
}

// With no generic service, gRPC answers a method no service has with
// UNIMPLEMENTED, and the interceptor sees that call too.
TEST(GrpcServerMetricsUnimplementedTest, UnimplementedMethodIsCounted) {
  Metrics metrics;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  // A callback service whose methods are all unimplemented.
  grpc::reflection::v1alpha::ServerReflection::CallbackService reflection;
  builder.RegisterService(&reflection);
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      creators;
  creators.push_back(
      metrics.MakeServerInterceptorFactory(GrpcHealthAndReflectionMethods()));
  builder.experimental().SetInterceptorCreators(std::move(creators));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  grpc::GenericStub stub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  grpc::Slice slice("x");
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/nope.Svc/Method", grpc::StubOptions(), &request,
                 &response,
                 [&done](grpc::Status s) { done.set_value(std::move(s)); });
  EXPECT_EQ(done.get_future().get().error_code(),
            grpc::StatusCode::UNIMPLEMENTED);

  const std::vector<PromSample> s = ParsePromText(metrics.ExpositionText());
  const PromLabels nope = MethodLabels("bidi_stream", "nope.Svc", "Method");
  EXPECT_EQ(FindSample(s, "grpc_server_started_total", nope), 1);
  EXPECT_EQ(FindSample(s, "grpc_server_handled_total",
                       WithCode(nope, "Unimplemented")),
            1);
  // The built-in methods passed as known are exported before any call.
  EXPECT_EQ(FindSample(s, "grpc_server_started_total",
                       MethodLabels("bidi_stream",
                                    "grpc.reflection.v1alpha.ServerReflection",
                                    "ServerReflectionInfo")),
            0);
  server->Shutdown();
}

TEST(GrpcServerMetricsFactoryTest, FactoriesOnOneRegistryShareSeries) {
  Metrics metrics;
  auto a = metrics.MakeServerInterceptorFactory(
      {{"/x.S/M", ServerRpcInfo::Type::UNARY}});
  auto b = metrics.MakeServerInterceptorFactory(
      {{"/x.S/M", ServerRpcInfo::Type::UNARY}});
  int started_series = 0;
  for (const PromSample& s : ParsePromText(metrics.ExpositionText())) {
    started_series += s.name == "grpc_server_started_total";
  }
  EXPECT_EQ(started_series, 1);
}

}  // namespace
}  // namespace registrar
