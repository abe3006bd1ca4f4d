#include "service/server/key_file_reload.h"

#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "spdlog/spdlog.h"

namespace registrar {

KeyFileReloader::KeyFileReloader(std::string path, IdGenerator& ids,
                                 Accept accept)
    : path_(std::move(path)), ids_(ids), accept_(std::move(accept)) {
  std::error_code ec;
  mtime_ = std::filesystem::last_write_time(path_, ec);
}

absl::Status KeyFileReloader::MaybeReload(absl::Time now,
                                          absl::Duration interval) {
  if (now - last_check_ < interval) return absl::OkStatus();
  last_check_ = now;
  std::error_code ec;
  const auto mtime = std::filesystem::last_write_time(path_, ec);
  if (ec || mtime == mtime_) return absl::OkStatus();
  // Tried once per change: a bad file is not re-read every tick.
  mtime_ = mtime;
  absl::Status s = Reload();
  if (!s.ok()) {
    spdlog::error(
        "--key_file {} changed but was not taken: {}; the keys "
        "in use stay",
        path_, std::string(s.message()));
  }
  return s;
}

absl::Status KeyFileReloader::Reload() {
  absl::StatusOr<KeyRing> keys = KeyRing::LoadFile(path_);
  if (!keys.ok()) return keys.status();
  if (absl::Status s = accept_(*keys); !s.ok()) return s;
  const std::vector<std::string> held = keys->Fingerprints();
  ids_.SetKeys(*std::move(keys));
  spdlog::info(
      "--key_file {} reloaded: new IDs are signed with key {}; "
      "keys verifying: {}",
      path_, held.back(), absl::StrJoin(held, ", "));
  return absl::OkStatus();
}

}  // namespace registrar
