#ifndef REGISTRAR_TOOLS_REGISTRARCTL_COMMANDS_H_
#define REGISTRAR_TOOLS_REGISTRARCTL_COMMANDS_H_

// registrarctl's commands. Each parses its own arguments and returns the
// exit status (kExitOk, kExitRpcError, kExitUsage).
//   rpc_commands.cc      the calls to a server (Context::client())
//   offline_commands.cc  inspect, keygen, hash-token: no server
//   lease_admin_commands.cc  leases, revoke-holder (registrar.v1.Admin)

#include <string>
#include <vector>

#include "tools/registrarctl/context.h"

namespace registrar::ctl {

using Args = std::vector<std::string>;

int RunIssue(Context& ctx, const Args& argv);
int RunOpen(Context& ctx, const Args& argv);
int RunValidate(Context& ctx, const Args& argv);
int RunCleanup(Context& ctx, const Args& argv);
int RunDescribe(Context& ctx, const Args& argv);
int RunList(Context& ctx, const Args& argv);
int RunLeaseGrant(Context& ctx, const Args& argv);
int RunLeaseKeepAlive(Context& ctx, const Args& argv);
int RunLeaseRevoke(Context& ctx, const Args& argv);
int RunWatch(Context& ctx, const Args& argv);
int RunLeases(Context& ctx, const Args& argv);
int RunRevokeHolder(Context& ctx, const Args& argv);

int RunInspect(Context& ctx, const Args& argv);
int RunKeygen(Context& ctx, const Args& argv);
int RunHashToken(Context& ctx, const Args& argv);

}  // namespace registrar::ctl

#endif  // REGISTRAR_TOOLS_REGISTRARCTL_COMMANDS_H_
