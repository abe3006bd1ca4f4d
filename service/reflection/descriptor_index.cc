#include "service/reflection/descriptor_index.h"

#include <algorithm>
#include <mutex>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "google/protobuf/descriptor.pb.h"
#include "service/reflection/embedded_descriptor_set.h"

namespace registrar {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::DescriptorPool;
using google::protobuf::FieldDescriptor;
using google::protobuf::FileDescriptor;
using google::protobuf::FileDescriptorProto;
using google::protobuf::FileDescriptorSet;

// Collects BuildFile's errors into one message.
class ErrorCollector : public DescriptorPool::ErrorCollector {
 public:
  void AddError(const std::string& filename, const std::string& element_name,
                const google::protobuf::Message* /*descriptor*/,
                ErrorLocation /*location*/,
                const std::string& message) override {
    if (!errors_.empty()) errors_ += "; ";
    errors_ += filename + ": " + element_name + ": " + message;
  }
  const std::string& errors() const { return errors_; }

 private:
  std::string errors_;
};

absl::Status CheckName(std::string_view what, std::string_view name) {
  if (name.size() > DescriptorIndex::kMaxNameBytes) {
    return absl::InvalidArgumentError(
        std::string(what) + " longer than " +
        std::to_string(DescriptorIndex::kMaxNameBytes) + " bytes");
  }
  return absl::OkStatus();
}

absl::Status NotFound(std::string_view what, std::string_view name) {
  return absl::NotFoundError(std::string(what) +
                             " not found: " + std::string(name));
}

}  // namespace

absl::StatusOr<std::unique_ptr<const DescriptorIndex>> DescriptorIndex::Create(
    std::string_view serialized_file_descriptor_set) {
  FileDescriptorSet set;
  if (!set.ParseFromArray(
          serialized_file_descriptor_set.data(),
          static_cast<int>(serialized_file_descriptor_set.size()))) {
    return absl::InvalidArgumentError(
        "descriptor set: not a serialized FileDescriptorSet");
  }
  std::unique_ptr<DescriptorIndex> index(new DescriptorIndex());
  for (const FileDescriptorProto& proto : set.file()) {
    if (index->serialized_.contains(proto.name())) {
      return absl::InvalidArgumentError("descriptor set: file " + proto.name() +
                                        " appears twice");
    }
    ErrorCollector errors;
    const FileDescriptor* file =
        index->pool_.BuildFileCollectingErrors(proto, &errors);
    if (file == nullptr) {
      return absl::InvalidArgumentError("descriptor set: " + errors.errors());
    }
    // Re-derived from the pool rather than copied from the set, so what is
    // served is exactly what the pool validated, comments included.
    FileDescriptorProto served;
    file->CopyTo(&served);
    file->CopyJsonNameTo(&served);
    file->CopySourceCodeInfoTo(&served);
    index->serialized_.emplace(file->name(), served.SerializeAsString());
  }
  return std::unique_ptr<const DescriptorIndex>(std::move(index));
}

absl::StatusOr<std::shared_ptr<const DescriptorIndex>>
DescriptorIndex::Embedded() {
  // Function-local static: built once, thread-safe, never destroyed (streams
  // may still hold it while the process exits).
  static const auto* const embedded =
      new absl::StatusOr<std::shared_ptr<const DescriptorIndex>>(
          Create(EmbeddedDescriptorSet()));
  return *embedded;
}

std::vector<std::string> DescriptorIndex::WithDependencies(
    const FileDescriptor* file) const {
  std::vector<std::string> out;
  std::set<const FileDescriptor*> seen = {file};
  std::vector<const FileDescriptor*> stack = {file};
  while (!stack.empty()) {
    const FileDescriptor* next = stack.back();
    stack.pop_back();
    out.push_back(serialized_.find(next->name())->second);
    // Reversed, so the first import is visited first.
    for (int i = next->dependency_count() - 1; i >= 0; --i) {
      const FileDescriptor* dep = next->dependency(i);
      if (seen.insert(dep).second) stack.push_back(dep);
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> DescriptorIndex::FileByName(
    std::string_view filename) const {
  if (absl::Status s = CheckName("file name", filename); !s.ok()) return s;
  const FileDescriptor* file = pool_.FindFileByName(std::string(filename));
  if (file == nullptr) return NotFound("file", filename);
  return WithDependencies(file);
}

absl::StatusOr<std::vector<std::string>> DescriptorIndex::FileContainingSymbol(
    std::string_view symbol) const {
  if (absl::Status s = CheckName("symbol", symbol); !s.ok()) return s;
  const FileDescriptor* file =
      pool_.FindFileContainingSymbol(std::string(symbol));
  // A package name also resolves there (to the first file that declares it),
  // but a package is not a declared symbol: only answer for real ones.
  if (file == nullptr || file->package() == symbol) {
    return NotFound("symbol", symbol);
  }
  return WithDependencies(file);
}

absl::StatusOr<std::vector<std::string>>
DescriptorIndex::FileContainingExtension(std::string_view containing_type,
                                         int number) const {
  if (absl::Status s = CheckName("type", containing_type); !s.ok()) return s;
  const Descriptor* type =
      pool_.FindMessageTypeByName(std::string(containing_type));
  if (type == nullptr) return NotFound("type", containing_type);
  const FieldDescriptor* extension = pool_.FindExtensionByNumber(type, number);
  if (extension == nullptr) {
    return absl::NotFoundError("extension " + std::to_string(number) + " of " +
                               std::string(containing_type) + " not found");
  }
  return WithDependencies(extension->file());
}

absl::StatusOr<std::vector<int>> DescriptorIndex::ExtensionNumbersOf(
    std::string_view type_name) const {
  if (absl::Status s = CheckName("type", type_name); !s.ok()) return s;
  const Descriptor* type = pool_.FindMessageTypeByName(std::string(type_name));
  if (type == nullptr) return NotFound("type", type_name);
  std::vector<const FieldDescriptor*> extensions;
  pool_.FindAllExtensions(type, &extensions);
  std::vector<int> numbers;
  numbers.reserve(extensions.size());
  for (const FieldDescriptor* extension : extensions) {
    numbers.push_back(extension->number());
  }
  std::sort(numbers.begin(), numbers.end());
  return numbers;
}

}  // namespace registrar
