#!/usr/bin/env bash
# Writes the seed corpus (fuzz/corpus/<target>/) from the handwritten inputs
# below: valid and near-valid IDs, key files, callers files, and request
# sequences for requests_fuzzer (text-format protos encoded with protoc, in
# the call framing requests_fuzzer.cc describes). Run from anywhere; needs
# protoc. The corpus is committed; rerun this after changing it.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
corpus="$root/fuzz/corpus"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# seed <target> <name> <text>: one file holding <text> exactly.
seed() { mkdir -p "$corpus/$1"; printf '%s' "$3" > "$corpus/$1/$2"; }

# --- id_fuzzer: ID text, TypeID suffixes --------------------------------
rm -rf "$corpus/id_fuzzer"
seed id_fuzzer thread thread_01m890mrhve008000me8f7x90s
seed id_fuzzer run run_01m890mxkee0080019de1gdm1v
seed id_fuzzer req req_01m890mxkee0080019de1gdm1v
seed id_fuzzer conn conn_01m890mxkee0080019de1gdm1v
seed id_fuzzer lease lease_01m890mxkee0080019de1gdm1v
seed id_fuzzer suffix_only 01m890mrhve008000me8f7x90s
seed id_fuzzer wrong_tag thread_01m890mrhve008000me8f7x90t
seed id_fuzzer uppercase THREAD_01M890MRHVE008000ME8F7X90S
seed id_fuzzer first_char_8 thread_81m890mrhve008000me8f7x90s
seed id_fuzzer not_crockford thread_01m890mrhve008000me8f7x9ou
seed id_fuzzer short thread_01m890mrhve008000me8f7x90
seed id_fuzzer long thread_01m890mrhve008000me8f7x90ss
seed id_fuzzer version_4 thread_01m890mrhv4008000me8f7x90s
seed id_fuzzer unknown_prefix user_01m890mrhve008000me8f7x90s
seed id_fuzzer legacy user_a_ws_1_xyz
seed id_fuzzer no_separator thread01m890mrhve008000me8f7x90s
seed id_fuzzer empty ''
seed id_fuzzer utf8 'thread_01m890mrhve008000me8f7x9é'

# --- key_file_fuzzer: tag key files --------------------------------------
rm -rf "$corpus/key_file_fuzzer"
seed key_file_fuzzer bare $'000102030405060708090a0b0c0d0e0f\n'
seed key_file_fuzzer versions $'# rotated 2026-11\n0 000102030405060708090a0b0c0d0e0f\n1 f0e0d0c0b0a090807060504030201000\n'
seed key_file_fuzzer wrapped $'3 000102030405060708090a0b0c0d0e0f\r\n0 f0e0d0c0b0a090807060504030201000\r\n'
seed key_file_fuzzer tabs $'\t2\t000102030405060708090A0B0C0D0E0F  \n\n'
seed key_file_fuzzer bad_version $'4 000102030405060708090a0b0c0d0e0f\n'
seed key_file_fuzzer duplicate $'1 000102030405060708090a0b0c0d0e0f\n1 000102030405060708090a0b0c0d0e0f\n'
seed key_file_fuzzer short_key $'0 000102030405060708090a0b0c0d0e\n'
seed key_file_fuzzer not_hex $'0 000102030405060708090a0b0c0d0e0g\n'
seed key_file_fuzzer three_fields $'0 1 000102030405060708090a0b0c0d0e0f\n'
seed key_file_fuzzer comments_only $'# nothing\n\n'

# --- callers_file_fuzzer: callers files -----------------------------------
rm -rf "$corpus/callers_file_fuzzer"
h1=f15ae5b5899f8327f52779c081b7b25d5217f62042ae4b6d677b0f25096e2141
h2=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
seed callers_file_fuzzer valid "{\"callers\": [
  {\"name\": \"gateway-eu\", \"role\": \"ROLE_GATEWAY\", \"tenants\": [\"acme\", \"globex\"],
   \"token_sha256\": [\"$h1\"]},
  {\"name\": \"dashboard\", \"role\": \"ROLE_READER\", \"tenants\": [\"*\"],
   \"cert_identities\": [\"spiffe://prod/ns/web/sa/dashboard\"]},
  {\"name\": \"ops\", \"role\": \"ROLE_ADMIN\", \"tokenSha256\": [\"$h2\"],
   \"certIdentities\": [\"ops.internal.example\"]}
]}"
seed callers_file_fuzzer role_number "{\"callers\": [{\"name\": \"r\", \"role\": 2, \"tenants\": [\"t\"], \"cert_identities\": [\"r.example\"]}]}"
seed callers_file_fuzzer unknown_role "{\"callers\": [{\"name\": \"r\", \"role\": \"ROLE_ROOT\", \"tenants\": [\"t\"], \"token_sha256\": [\"$h1\"]}]}"
seed callers_file_fuzzer duplicate_hash "{\"callers\": [{\"name\": \"a\", \"role\": \"ROLE_ADMIN\", \"token_sha256\": [\"$h1\"]}, {\"name\": \"b\", \"role\": \"ROLE_ADMIN\", \"token_sha256\": [\"$h1\"]}]}"
seed callers_file_fuzzer uppercase_hash "{\"callers\": [{\"name\": \"a\", \"role\": \"ROLE_ADMIN\", \"token_sha256\": [\"${h1^^}\"]}]}"
seed callers_file_fuzzer no_credential '{"callers": [{"name": "a", "role": "ROLE_GATEWAY", "tenants": ["acme"]}]}'
seed callers_file_fuzzer star_and_tenant "{\"callers\": [{\"name\": \"a\", \"role\": \"ROLE_READER\", \"tenants\": [\"*\", \"acme\"], \"token_sha256\": [\"$h2\"]}]}"
seed callers_file_fuzzer escapes '{"callers": [{"name": "caf\u00e9 \"q\"", "role": "ROLE_ADMIN", "cert_identities": ["a\/b"]}]}'
seed callers_file_fuzzer unknown_field '{"callers": [], "version": 2}'
seed callers_file_fuzzer empty_object '{}'
seed callers_file_fuzzer not_json 'callers: []'

# --- requests_fuzzer: call sequences ---------------------------------------
rm -rf "$corpus/requests_fuzzer"
mkdir -p "$corpus/requests_fuzzer"
proto_dir="$root/proto"
declare -A ops=([Issue]=0 [OpenContext]=1 [Validate]=2 [Cleanup]=3
  [GrantLease]=4 [KeepAlive]=5 [RevokeLease]=6 [Describe]=7 [ListOwned]=8
  [Watch]=9)
out=""
# call <Rpc> <text-format request>: appends one framed call to $out.
call() {
  local rpc="$1" text="$2" bin="$tmp/msg"
  protoc --encode="registrar.v1.${rpc}Request" -I "$proto_dir" \
    -I /usr/include "$proto_dir/registrar/v1/registrar.proto" \
    <<<"$text" >"$bin"
  frame $((${ops[$rpc]} + 11 * caller)) "$bin"
}
# as <0|1|2>: the caller of the following calls: none, gw-a, gw-b.
caller=0
as() { caller="$1"; }
# advance <seconds>: the clock op.
advance() { printf "\\x$(printf %02x "$1")" >"$tmp/msg"; frame 10 "$tmp/msg"; }
frame() {
  local n; n=$(stat -c %s "$2")
  printf "\\x$(printf %02x "$1")\\x$(printf %02x $((n & 255)))\\x$(printf %02x $((n >> 8)))" >>"$out"
  cat "$2" >>"$out"
}
begin() { out="$corpus/requests_fuzzer/$1"; : >"$out"; caller=0; }
alice='owner { tenant: "acme" user_id: "alice" }'
bob='owner { tenant: "acme" user_id: "bob" }'

# One call of each RPC, valid.
begin issue;        call Issue "kind: KIND_THREAD $alice count: 2 labels { key: \"app\" value: \"chat\" }"
begin open_context; call OpenContext "$alice labels { key: \"k\" value: \"v\" }"
begin validate;     call Validate "$alice items { id: \"thread_01m890mrhve008000me8f7x90s\" expected_kind: KIND_THREAD } items { id: \"user_a_ws_1_xyz\" owner { tenant: \"acme\" user_id: \"bob\" } } include_records: true"
begin cleanup;      call Cleanup "$alice ids { ids: \"thread_01m890mrhve008000me8f7x90s\" ids: \"junk\" } reason: \"ws_closed\""
begin grant_lease;  call GrantLease 'holder: "gateway-0" ttl_seconds: 30'
begin keep_alive;   call KeepAlive 'lease_id: "lease_01m890mxkee0080019de1gdm1v"'
begin revoke_lease; call RevokeLease 'lease_id: "lease_01m890mxkee0080019de1gdm1v"'
begin describe;     call Describe 'id: "run_01m890mxkee0080019de1gdm1v"'
begin list_owned;   call ListOwned "$alice kind: KIND_THREAD include_ended: true page_size: 2 page_token: \"01m890mrhve008000me8f7x90s\""
begin watch;        call Watch 'start_revision: 1 tenant: "acme"'

# One call of each RPC, near-valid (each fails one check).
begin issue_no_owner;    call Issue 'kind: KIND_THREAD owner { tenant: "acme" } count: 1'
begin issue_over_batch;  call Issue "kind: KIND_RUN $alice count: 100000"
begin issue_bad_kind;    call Issue "kind: 9 $alice"
begin issue_ctrl_label;  call Issue "kind: KIND_REQUEST $alice labels { key: \"a\\tb\" value: \"\\x01\" }"
begin open_context_long; call OpenContext "$alice thread_id: \"thread_01m890mrhve008000me8f7x90s_and_then_some_more_text_past_64\""
begin validate_empty;    call Validate "$alice"
begin validate_no_owner; call Validate 'items { id: "thread_01m890mrhve008000me8f7x90s" }'
begin cleanup_no_target; call Cleanup "$alice"
begin cleanup_false;     call Cleanup "$alice all_owned: false"
begin grant_zero_ttl;    call GrantLease 'holder: "gateway-0"'
begin grant_long_ttl;    call GrantLease 'holder: "gateway-0" ttl_seconds: 4000000000'
begin keep_alive_empty;  call KeepAlive ''
begin describe_lease;    call Describe 'id: "lease_01m890mxkee0080019de1gdm1v"'
begin list_bad_token;    call ListOwned "$alice page_token: \"zzzz\" page_size: 5000"
begin watch_bad_tenant;  call Watch 'tenant: "\x7f"'

# Sequences that reach state: "$<n>" names the n-th ID minted so far.
begin thread_run_request
call Issue "kind: KIND_THREAD $alice"
call Issue "kind: KIND_RUN $alice parent_id: \"\$0\""
call Issue "kind: KIND_REQUEST $alice parent_id: \"\$1\" count: 3"
call Validate "$alice items { id: \"\$0\" expected_kind: KIND_THREAD } items { id: \"\$1\" expected_kind: KIND_THREAD } items { id: \"\$2\" $bob } include_records: true"
call Describe 'id: "$1"'
call ListOwned "$alice"
call Cleanup "$alice ids { ids: \"\$0\" ids: \"\$0\" }"
call Validate "$alice items { id: \"\$1\" } items { id: \"\$4\" }"

begin lease_connection
call GrantLease 'holder: "gateway-0" ttl_seconds: 5'
call Issue "kind: KIND_CONNECTION $alice lease_id: \"\$0\""
call OpenContext "$alice connection_id: \"\$1\""
call OpenContext "$alice thread_id: \"\$2\" connection_id: \"\$1\""
call KeepAlive 'lease_id: "$0"'
advance 10
call Validate "$alice items { id: \"\$1\" } items { id: \"\$3\" } items { id: \"\$2\" }"
call KeepAlive 'lease_id: "$0"'
call RevokeLease 'lease_id: "$0"'

begin watch_after_changes
call Issue "kind: KIND_THREAD $alice count: 2"
call Issue 'kind: KIND_THREAD owner { tenant: "other" user_id: "bob" }'
call Cleanup "$alice ids { ids: \"\$0\" ids: \"\$2\" }"
call Watch 'start_revision: 1 tenant: "acme"'
call Watch 'start_revision: 2'
call Watch 'start_revision: 999'

begin revoke_cascade
call GrantLease 'holder: "gateway-1" ttl_seconds: 60'
call Issue "kind: KIND_CONNECTION $alice lease_id: \"\$0\" count: 2"
call Issue "kind: KIND_RUN $alice connection_id: \"\$1\""
call RevokeLease 'lease_id: "$0"'
call Cleanup "$alice connection_id: \"\$2\""
advance 40
call ListOwned "$alice include_ended: true"

begin cleanup_owners
call Issue "kind: KIND_CONNECTION $alice"
call OpenContext "$alice connection_id: \"\$0\""
call Cleanup "$bob ids { ids: \"\$0\" ids: \"\$1\" }"
call Cleanup "$alice connection_id: \"\$0\" reason: \"ws_closed\""
call Cleanup "$alice all_owned: true"
call Issue "kind: KIND_RUN $alice parent_id: \"\$1\""
call Issue "kind: KIND_RUN $bob parent_id: \"\$1\""

begin pages
call Issue "kind: KIND_THREAD $alice count: 5"
call ListOwned "$alice page_size: 2"
call ListOwned "$alice page_size: 2 page_token: \"\$1\""
call Describe 'id: "$4"'

# A lease belongs to the caller that granted it.
begin lease_owners
as 1; call GrantLease 'holder: "gw-a-0" ttl_seconds: 30'
as 2; call KeepAlive 'lease_id: "$0"'
as 2; call Issue "kind: KIND_CONNECTION $alice lease_id: \"\$0\""
as 1; call Issue "kind: KIND_CONNECTION $alice lease_id: \"\$0\""
as 2; call RevokeLease 'lease_id: "$0"'
as 0; call KeepAlive 'lease_id: "$0"'
as 1; call RevokeLease 'lease_id: "$0"'
as 1; call Validate "$alice items { id: \"\$1\" }"
