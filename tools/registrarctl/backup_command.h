#ifndef REGISTRAR_TOOLS_REGISTRARCTL_BACKUP_COMMAND_H_
#define REGISTRAR_TOOLS_REGISTRARCTL_BACKUP_COMMAND_H_

// `registrarctl backup DIR`: asks the server (registrar.v1.Admin/Backup, an
// admin-role call) for an online backup into DIR, a new directory on the
// server's filesystem given as an absolute path. Prints
// "DIR revision N records R bytes B" (or one JSON object), which
// `registrar --restore_from=DIR` starts from.

#include <ostream>
#include <string>
#include <vector>

#include "client/client.h"
#include "grpcpp/client_context.h"

namespace registrar {

// Sets up `ctx` for a call to registrar.v1.Admin with the connection
// settings of `options`: its bearer token and a deadline of at least
// `min_deadline` (options.deadline when that is longer).
void PrepareAdminCall(const ClientOptions& options, absl::Duration min_deadline,
                      grpc::ClientContext* ctx);

// Runs the command with the global options' connection settings (the
// deadline is raised to at least 10 minutes: a backup flushes and fsyncs).
// Returns the exit status: 0 ok, 1 RPC error, 2 usage error; messages go to
// `err`, the result to `out`.
int RunBackupCommand(const ClientOptions& options,
                     const std::vector<std::string>& args, bool json,
                     std::ostream& out, std::ostream& err);

}  // namespace registrar

#endif  // REGISTRAR_TOOLS_REGISTRARCTL_BACKUP_COMMAND_H_
