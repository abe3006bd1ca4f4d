#ifndef REGISTRAR_SERVICE_REFLECTION_DESCRIPTOR_INDEX_H_
#define REGISTRAR_SERVICE_REFLECTION_DESCRIPTOR_INDEX_H_

// The proto files a reflection service can describe, indexed for its four
// lookups. Built once from a serialized FileDescriptorSet (normally the one
// embedded at build time, with comments), immutable afterwards, so one index
// can be shared by any number of threads and streams.

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/descriptor.h"

namespace registrar {

class DescriptorIndex {
 public:
  // Longest file or symbol name a lookup accepts; longer is INVALID_ARGUMENT
  // (no proto name is that long, and a bound keeps hostile requests cheap).
  static constexpr size_t kMaxNameBytes = 1024;

  // Builds the index from a serialized google.protobuf.FileDescriptorSet
  // whose files come in dependency order (imports first), as protoc
  // --include_imports writes them. INVALID_ARGUMENT when the bytes do not
  // parse, a file does not build (missing import, duplicate symbol, ...) or
  // a file name repeats.
  static absl::StatusOr<std::unique_ptr<const DescriptorIndex>> Create(
      std::string_view serialized_file_descriptor_set);

  // The index of EmbeddedDescriptorSet(), built on first use and kept for
  // the life of the process. Not null once ok; the error (a build bug) is
  // returned on every call.
  static absl::StatusOr<std::shared_ptr<const DescriptorIndex>> Embedded();

  DescriptorIndex(const DescriptorIndex&) = delete;
  DescriptorIndex& operator=(const DescriptorIndex&) = delete;

  // Each lookup below answers serialized FileDescriptorProtos (with
  // source_code_info and json_name): first the file asked for, then each of
  // its transitive imports once, depth first. A client can therefore build
  // every type the file uses from one answer.

  // The file named `filename` (e.g. "registrar/v1/registrar.proto").
  // NOT_FOUND when unknown.
  absl::StatusOr<std::vector<std::string>> FileByName(
      std::string_view filename) const;

  // The file declaring the fully qualified `symbol`: a message, enum, enum
  // value, field, oneof, service, method or extension, e.g.
  // "registrar.v1.Registrar", "registrar.v1.Registrar.Issue",
  // "registrar.v1.IssueRequest.count". NOT_FOUND when unknown.
  absl::StatusOr<std::vector<std::string>> FileContainingSymbol(
      std::string_view symbol) const;

  // The file declaring extension `number` of message `containing_type`.
  // NOT_FOUND when the type or the extension is unknown.
  absl::StatusOr<std::vector<std::string>> FileContainingExtension(
      std::string_view containing_type, int number) const;

  // The numbers of all known extensions of message `type`, ascending (empty
  // when it has none). NOT_FOUND when the type is unknown.
  absl::StatusOr<std::vector<int>> ExtensionNumbersOf(
      std::string_view type) const;

 private:
  DescriptorIndex() = default;

  // `file` and its transitive imports, serialized, as described above.
  std::vector<std::string> WithDependencies(
      const google::protobuf::FileDescriptor* file) const;

  google::protobuf::DescriptorPool pool_;
  // File name -> its serialized FileDescriptorProto, made once at Create.
  std::map<std::string, std::string, std::less<>> serialized_;
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_REFLECTION_DESCRIPTOR_INDEX_H_
