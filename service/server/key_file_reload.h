#ifndef REGISTRAR_SERVICE_SERVER_KEY_FILE_RELOAD_H_
#define REGISTRAR_SERVICE_SERVER_KEY_FILE_RELOAD_H_

// Tag-key rotation without a restart: watches --key_file and, when it
// changed, installs its keys into the ID generator. IDs minted from then on
// carry the new signing key; every key the file lists verifies. A file
// that does not parse, or that `accept` refuses (the data dir's remembered
// key missing from it: RocksDbStore::AdoptTagKey), is logged and the keys
// in use stay.
//
// Called from the server's ticker thread only; not thread-safe.

#include <filesystem>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "service/id/id_generator.h"
#include "service/id/key_ring.h"

namespace registrar {

class KeyFileReloader {
 public:
  // Whether the server may use `keys` (e.g. the store's tag-key check).
  using Accept = std::function<absl::Status(const KeyRing& keys)>;

  // `ids` must outlive the reloader. The file's current state counts as
  // loaded (the server read it at start).
  KeyFileReloader(std::string path, IdGenerator& ids, Accept accept);

  // At most once per `interval`: if the file's modification time changed,
  // reloads it. Returns what the reload did (OK when nothing was due).
  absl::Status MaybeReload(absl::Time now,
                           absl::Duration interval = absl::Seconds(1));

 private:
  absl::Status Reload();

  const std::string path_;
  IdGenerator& ids_;
  const Accept accept_;
  std::filesystem::file_time_type mtime_;
  absl::Time last_check_ = absl::InfinitePast();
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_SERVER_KEY_FILE_RELOAD_H_
