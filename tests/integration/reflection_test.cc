// Talks to the real server the way grpcurl does: with no copy of
// registrar.proto (no registrar header is included here), only gRPC's own
// reflection and health stubs. It lists services, fetches descriptors (with
// their comments) over reflection v1 and v1alpha, then builds an IssueRequest
// from the reflected descriptors alone and calls Issue with a generic stub.

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/byte_buffer.h>
#include <signal.h>

#include <chrono>
#include <future>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/descriptor_database.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/message.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/integration/server_process.h"

namespace registrar {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::DescriptorPool;
using ::google::protobuf::DynamicMessageFactory;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::FileDescriptorProto;
using ::google::protobuf::Message;
using ::google::protobuf::MethodDescriptor;
using ::google::protobuf::Reflection;
using ::google::protobuf::SimpleDescriptorDatabase;
using ::registrar::testing::ServerProcess;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using ::testing::StartsWith;

constexpr char kRegistrarFile[] = "registrar/v1/registrar.proto";
constexpr int kNotFound = 5;         // grpc::StatusCode::NOT_FOUND
constexpr int kInvalidArgument = 3;  // grpc::StatusCode::INVALID_ARGUMENT

// The two protocol versions; grpcurl tries v1 first, then v1alpha.
struct V1 {
  using Service = grpc::reflection::v1::ServerReflection;
  using Request = grpc::reflection::v1::ServerReflectionRequest;
  using Response = grpc::reflection::v1::ServerReflectionResponse;
  static constexpr char kService[] = "grpc.reflection.v1.ServerReflection";
};
struct V1Alpha {
  using Service = grpc::reflection::v1alpha::ServerReflection;
  using Request = grpc::reflection::v1alpha::ServerReflectionRequest;
  using Response = grpc::reflection::v1alpha::ServerReflectionResponse;
  static constexpr char kService[] = "grpc.reflection.v1alpha.ServerReflection";
};

std::chrono::system_clock::time_point Deadline() {
  return std::chrono::system_clock::now() + std::chrono::seconds(30);
}

// One ServerReflectionInfo stream, used request by request.
template <typename V>
class ReflectionStream {
 public:
  explicit ReflectionStream(const std::shared_ptr<grpc::Channel>& channel)
      : stub_(V::Service::NewStub(channel)) {
    context_.set_deadline(Deadline());
    stream_ = stub_->ServerReflectionInfo(&context_);
  }

  // Sends `request` and returns its answer; nullopt if the stream broke.
  std::optional<typename V::Response> Ask(const typename V::Request& request) {
    typename V::Response response;
    if (!stream_->Write(request) || !stream_->Read(&response)) {
      return std::nullopt;
    }
    return response;
  }

  // Reads after the server ended the stream: false once it has.
  bool ReadMore() {
    typename V::Response response;
    return stream_->Read(&response);
  }

  // Half-closes; the stream's final status.
  grpc::Status Close() {
    stream_->WritesDone();
    return stream_->Finish();
  }

 private:
  std::unique_ptr<typename V::Service::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<
      grpc::ClientReaderWriter<typename V::Request, typename V::Response>>
      stream_;
};

template <typename V>
typename V::Request SymbolRequest(const std::string& symbol) {
  typename V::Request request;
  request.set_file_containing_symbol(symbol);
  return request;
}

template <typename V>
typename V::Request FileRequest(const std::string& filename) {
  typename V::Request request;
  request.set_file_by_filename(filename);
  return request;
}

template <typename Response>
std::vector<FileDescriptorProto> Files(const Response& response) {
  std::vector<FileDescriptorProto> files;
  for (const std::string& bytes :
       response.file_descriptor_response().file_descriptor_proto()) {
    FileDescriptorProto file;
    EXPECT_TRUE(file.ParseFromString(bytes));
    files.push_back(std::move(file));
  }
  return files;
}

std::vector<std::string> Names(const std::vector<FileDescriptorProto>& files) {
  std::vector<std::string> names;
  for (const FileDescriptorProto& file : files) names.push_back(file.name());
  return names;
}

// The leading comment of rpc `method` of service `service` in `file`, from
// its source_code_info ("" when there is none).
std::string MethodComment(const FileDescriptorProto& file,
                          const std::string& service,
                          const std::string& method) {
  for (int s = 0; s < file.service_size(); ++s) {
    if (file.service(s).name() != service) continue;
    for (int m = 0; m < file.service(s).method_size(); ++m) {
      if (file.service(s).method(m).name() != method) continue;
      // FileDescriptorProto.service = 6, ServiceDescriptorProto.method = 2.
      const std::vector<int> path = {6, s, 2, m};
      for (const auto& location : file.source_code_info().location()) {
        if (std::vector<int>(location.path().begin(), location.path().end()) ==
            path) {
          return location.leading_comments();
        }
      }
    }
  }
  return "";
}

// One server shared by the tests below (the shutdown test starts its own),
// started on first use and killed when the test binary exits. Null when it
// did not start (the error is printed).
ServerProcess* SharedServer() {
  static ServerProcess* const server = []() -> ServerProcess* {
    auto started = ServerProcess::Start();
    if (!started.ok()) {
      std::cerr << "cannot start the server: " << started.status() << "\n";
      return nullptr;
    }
    static std::unique_ptr<ServerProcess> owner = *std::move(started);
    return owner.get();
  }();
  return server;
}

std::shared_ptr<grpc::Channel> SharedChannel() {
  return grpc::CreateChannel(SharedServer()->grpc_address(),
                             grpc::InsecureChannelCredentials());
}

template <typename V>
class ReflectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(SharedServer(), nullptr);
    channel_ = SharedChannel();
  }

  std::shared_ptr<grpc::Channel> channel_;
};

using Versions = ::testing::Types<V1, V1Alpha>;
class VersionNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    return std::is_same_v<T, V1> ? "V1" : "V1Alpha";
  }
};
TYPED_TEST_SUITE(ReflectionTest, Versions, VersionNames);

TYPED_TEST(ReflectionTest, ListServicesNamesRegistrarHealthAndReflection) {
  ReflectionStream<TypeParam> stream(this->channel_);
  typename TypeParam::Request request;
  request.set_list_services("*");
  auto response = stream.Ask(request);
  ASSERT_TRUE(response.has_value());
  std::vector<std::string> names;
  for (const auto& service : response->list_services_response().service()) {
    names.push_back(service.name());
  }
  EXPECT_THAT(names,
              IsSupersetOf({"registrar.v1.Registrar", "grpc.health.v1.Health",
                            "grpc.reflection.v1.ServerReflection",
                            "grpc.reflection.v1alpha.ServerReflection"}));
  EXPECT_TRUE(stream.Close().ok());
}

TYPED_TEST(ReflectionTest, ServiceSymbolGivesFileWithCommentsAndImports) {
  ReflectionStream<TypeParam> stream(this->channel_);
  auto response =
      stream.Ask(SymbolRequest<TypeParam>("registrar.v1.Registrar"));
  ASSERT_TRUE(response.has_value());
  ASSERT_FALSE(response->has_error_response())
      << response->error_response().error_message();
  EXPECT_EQ(response->original_request().file_containing_symbol(),
            "registrar.v1.Registrar");
  std::vector<FileDescriptorProto> files = Files(*response);
  ASSERT_FALSE(files.empty());
  // The file asked for comes first, then its imports.
  EXPECT_EQ(files[0].name(), kRegistrarFile);
  EXPECT_THAT(Names(files), Contains("google/protobuf/timestamp.proto"));
  EXPECT_THAT(MethodComment(files[0], "Registrar", "Issue"),
              HasSubstr("each is recorded before the"));

  // The import is also resolvable by name on the same stream.
  auto timestamp =
      stream.Ask(FileRequest<TypeParam>("google/protobuf/timestamp.proto"));
  ASSERT_TRUE(timestamp.has_value());
  ASSERT_FALSE(timestamp->has_error_response());
  std::vector<FileDescriptorProto> timestamp_files = Files(*timestamp);
  ASSERT_FALSE(timestamp_files.empty());
  EXPECT_EQ(timestamp_files[0].name(), "google/protobuf/timestamp.proto");
  EXPECT_EQ(timestamp_files[0].message_type(0).name(), "Timestamp");
  EXPECT_TRUE(stream.Close().ok());
}

TYPED_TEST(ReflectionTest, MethodFieldEnumAndMessageSymbolsResolve) {
  ReflectionStream<TypeParam> stream(this->channel_);
  for (const char* symbol :
       {"registrar.v1.Registrar.Issue", "registrar.v1.IssueRequest.count",
        "registrar.v1.IssueRequest", "registrar.v1.Owner.user_id",
        "registrar.v1.Kind", "registrar.v1.KIND_THREAD",
        "registrar.v1.CleanupRequest.target"}) {
    SCOPED_TRACE(symbol);
    auto response = stream.Ask(SymbolRequest<TypeParam>(symbol));
    ASSERT_TRUE(response.has_value());
    ASSERT_FALSE(response->has_error_response())
        << response->error_response().error_message();
    std::vector<FileDescriptorProto> files = Files(*response);
    ASSERT_FALSE(files.empty());
    EXPECT_EQ(files[0].name(), kRegistrarFile);
  }
  EXPECT_TRUE(stream.Close().ok());
}

TYPED_TEST(ReflectionTest, HealthServiceIsDescribed) {
  ReflectionStream<TypeParam> stream(this->channel_);
  auto response =
      stream.Ask(SymbolRequest<TypeParam>("grpc.health.v1.Health.Check"));
  ASSERT_TRUE(response.has_value());
  ASSERT_FALSE(response->has_error_response())
      << response->error_response().error_message();
  EXPECT_THAT(Names(Files(*response)),
              ElementsAre("grpc/health/v1/health.proto"));
  EXPECT_TRUE(stream.Close().ok());
}

TYPED_TEST(ReflectionTest,
           UnknownAndMalformedRequestsGetErrorsNotABrokenStream) {
  ReflectionStream<TypeParam> stream(this->channel_);

  auto unknown = stream.Ask(SymbolRequest<TypeParam>("registrar.v1.NoSuch"));
  ASSERT_TRUE(unknown.has_value());
  EXPECT_EQ(unknown->error_response().error_code(), kNotFound);
  EXPECT_EQ(unknown->file_descriptor_response().file_descriptor_proto_size(),
            0);

  auto package = stream.Ask(SymbolRequest<TypeParam>("registrar.v1"));
  ASSERT_TRUE(package.has_value());
  EXPECT_EQ(package->error_response().error_code(), kNotFound);

  auto file = stream.Ask(FileRequest<TypeParam>("no/such.proto"));
  ASSERT_TRUE(file.has_value());
  EXPECT_EQ(file->error_response().error_code(), kNotFound);

  typename TypeParam::Request extensions;
  extensions.set_all_extension_numbers_of_type("registrar.v1.NoSuch");
  auto no_type = stream.Ask(extensions);
  ASSERT_TRUE(no_type.has_value());
  EXPECT_EQ(no_type->error_response().error_code(), kNotFound);

  extensions.set_all_extension_numbers_of_type("registrar.v1.IssueRequest");
  auto none = stream.Ask(extensions);
  ASSERT_TRUE(none.has_value());
  EXPECT_FALSE(none->has_error_response());
  EXPECT_EQ(none->all_extension_numbers_response().base_type_name(),
            "registrar.v1.IssueRequest");
  EXPECT_EQ(none->all_extension_numbers_response().extension_number_size(), 0);

  typename TypeParam::Request extension;
  extension.mutable_file_containing_extension()->set_containing_type(
      "registrar.v1.IssueRequest");
  extension.mutable_file_containing_extension()->set_extension_number(100);
  auto no_extension = stream.Ask(extension);
  ASSERT_TRUE(no_extension.has_value());
  EXPECT_EQ(no_extension->error_response().error_code(), kNotFound);

  auto empty = stream.Ask(typename TypeParam::Request());
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(empty->error_response().error_code(), kInvalidArgument);

  auto long_name = stream.Ask(SymbolRequest<TypeParam>(std::string(2000, 'a')));
  ASSERT_TRUE(long_name.has_value());
  EXPECT_EQ(long_name->error_response().error_code(), kInvalidArgument);

  typename TypeParam::Request huge = FileRequest<TypeParam>("x");
  huge.set_host(std::string(64 * 1024, 'h'));
  auto too_big = stream.Ask(huge);
  ASSERT_TRUE(too_big.has_value());
  EXPECT_EQ(too_big->error_response().error_code(), kInvalidArgument);
  EXPECT_FALSE(too_big->has_original_request());

  // Still answering after all that.
  auto ok = stream.Ask(SymbolRequest<TypeParam>("registrar.v1.Registrar"));
  ASSERT_TRUE(ok.has_value());
  EXPECT_FALSE(ok->has_error_response());
  EXPECT_TRUE(stream.Close().ok());
}

TYPED_TEST(ReflectionTest, HalfCloseWithoutRequestsEndsOk) {
  ReflectionStream<TypeParam> stream(this->channel_);
  EXPECT_TRUE(stream.Close().ok());
}

// What grpcurl does for `grpcurl -d '{...}' host registrar.v1.Registrar/Issue`:
// resolve the service over reflection, build a pool from the reflected files
// only, encode the request with a dynamic message, call by method name.
TYPED_TEST(ReflectionTest, DynamicIssueThroughGenericStub) {
  ReflectionStream<TypeParam> stream(this->channel_);
  auto response =
      stream.Ask(SymbolRequest<TypeParam>("registrar.v1.Registrar"));
  ASSERT_TRUE(response.has_value());
  ASSERT_FALSE(response->has_error_response());
  EXPECT_TRUE(stream.Close().ok());

  SimpleDescriptorDatabase database;
  for (const FileDescriptorProto& file : Files(*response)) {
    ASSERT_TRUE(database.Add(file)) << file.name();
  }
  DescriptorPool pool(&database);
  const MethodDescriptor* issue =
      pool.FindMethodByName("registrar.v1.Registrar.Issue");
  ASSERT_NE(issue, nullptr);
  ASSERT_EQ(issue->input_type()->full_name(), "registrar.v1.IssueRequest");

  DynamicMessageFactory factory(&pool);
  std::unique_ptr<Message> request(
      factory.GetPrototype(issue->input_type())->New());
  const Descriptor* request_type = issue->input_type();
  const Reflection* reflection = request->GetReflection();
  const FieldDescriptor* kind = request_type->FindFieldByName("kind");
  ASSERT_NE(kind, nullptr);
  ASSERT_NE(kind->enum_type()->FindValueByName("KIND_THREAD"), nullptr);
  reflection->SetEnum(request.get(), kind,
                      kind->enum_type()->FindValueByName("KIND_THREAD"));
  reflection->SetUInt32(request.get(), request_type->FindFieldByName("count"),
                        3);
  Message* owner = reflection->MutableMessage(
      request.get(), request_type->FindFieldByName("owner"), &factory);
  const Reflection* owner_reflection = owner->GetReflection();
  owner_reflection->SetString(
      owner, owner->GetDescriptor()->FindFieldByName("tenant"), "acme");
  owner_reflection->SetString(
      owner, owner->GetDescriptor()->FindFieldByName("user_id"), "alice");

  const std::string method =
      "/" + issue->service()->full_name() + "/" + issue->name();
  ASSERT_EQ(method, "/registrar.v1.Registrar/Issue");
  grpc::Slice request_slice(request->SerializeAsString());
  grpc::ByteBuffer request_buffer(&request_slice, 1);
  grpc::ByteBuffer response_buffer;
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  grpc::GenericStub generic(this->channel_);
  std::promise<grpc::Status> done;
  generic.UnaryCall(&context, method, grpc::StubOptions(), &request_buffer,
                    &response_buffer,
                    [&done](grpc::Status status) { done.set_value(status); });
  grpc::Status status = done.get_future().get();
  ASSERT_TRUE(status.ok()) << status.error_message();

  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response_buffer.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  std::unique_ptr<Message> reply(
      factory.GetPrototype(issue->output_type())->New());
  ASSERT_TRUE(reply->ParseFromString(bytes));
  const FieldDescriptor* ids = issue->output_type()->FindFieldByName("ids");
  ASSERT_NE(ids, nullptr);
  const int count = reply->GetReflection()->FieldSize(*reply, ids);
  ASSERT_EQ(count, 3);
  for (int i = 0; i < count; ++i) {
    EXPECT_THAT(reply->GetReflection()->GetRepeatedString(*reply, ids, i),
                StartsWith("thread_"));
  }
}

TEST(ReflectionHealthTest, ServerAndRegistrarServeThroughHealthStub) {
  ASSERT_NE(SharedServer(), nullptr);
  auto stub = grpc::health::v1::Health::NewStub(SharedChannel());
  for (const char* service : {"", "registrar.v1.Registrar"}) {
    SCOPED_TRACE(service);
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status = stub->Check(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.status(),
              grpc::health::v1::HealthCheckResponse::SERVING);
  }
}

// An open reflection stream must not hold up shutdown, and the server must
// still exit cleanly (its reactor is cancelled and freed).
TEST(ReflectionShutdownTest, OpenStreamEndsWhenServerStops) {
  auto server = ServerProcess::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel((*server)->grpc_address(),
                                     grpc::InsecureChannelCredentials());
  ReflectionStream<V1> stream(channel);
  V1::Request request;
  request.set_list_services("");
  ASSERT_TRUE(stream.Ask(request).has_value());

  (*server)->Signal(SIGTERM);
  EXPECT_EQ((*server)->WaitForExit(absl::Seconds(20)), 0) << (*server)->Log();
  EXPECT_FALSE(stream.ReadMore());
  stream.Close();  // returns (cancelled): nothing is left hanging
}

}  // namespace
}  // namespace registrar
