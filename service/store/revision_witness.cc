#include "service/store/revision_witness.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace registrar {
namespace {

std::string PathOf(const std::string& dir) {
  return absl::StrCat(dir, "/", kRevisionWitnessFile);
}

absl::Status Errno(const char* what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat("store: cannot ", what, " ", path,
                                             ": ", std::strerror(errno)));
}

}  // namespace

absl::StatusOr<std::optional<uint64_t>> RevisionWitness::Read(
    const std::string& dir) {
  const std::string path = PathOf(dir);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return std::nullopt;
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  if (s.size() > 64) s.resize(64);  // bounded in the message below
  uint64_t revision = 0;
  const char* end = s.data() + s.size();
  if (!s.empty() && s.back() == '\n') --end;
  auto [p, ec] = std::from_chars(s.data(), end, revision);
  if (s.empty() || ec != std::errc() || p != end) {
    return absl::DataLossError(absl::StrCat("the revision witness ", path,
                                            " holds \"", absl::CHexEscape(s),
                                            "\", not a revision"));
  }
  return revision;
}

absl::StatusOr<std::unique_ptr<RevisionWitness>> RevisionWitness::Open(
    const std::string& dir, uint64_t revision) {
  const std::string path = PathOf(dir);
  const bool existed = ::access(path.c_str(), F_OK) == 0;
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("open", path);
  std::unique_ptr<RevisionWitness> w(new RevisionWitness(path, fd));
  if (absl::Status s = w->Write(revision, /*sync=*/true); !s.ok()) return s;
  if (!existed) {
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return Errno("open", dir);
    const int r = ::fsync(dfd);
    ::close(dfd);
    if (r != 0) return Errno("fsync", dir);
  }
  return w;
}

RevisionWitness::~RevisionWitness() { ::close(fd_); }

absl::Status RevisionWitness::Write(uint64_t revision, bool sync) {
  const std::string line = absl::StrFormat("%020d\n", revision);
  const ssize_t n = ::pwrite(fd_, line.data(), line.size(), 0);
  if (n != static_cast<ssize_t>(line.size())) {
    if (n >= 0) errno = EIO;
    return Errno("write", path_);
  }
  if (sync && ::fdatasync(fd_) != 0) return Errno("fdatasync", path_);
  return absl::OkStatus();
}

}  // namespace registrar
