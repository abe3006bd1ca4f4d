"""registrar_client against the real registrar binary: every call (asyncio
and blocking), every error type with its details, retries, TLS, tokens,
Watch resume and the LeaseKeeper."""

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import uuid

import grpc
import pytest

import registrar_client as rc
from registrar_client import pb
from harness import (ServerProcess, async_wait_until, run_async, time_scale,
                     wait_until)

CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def new_owner(tenant="acme"):
    return rc.owner(tenant, "user-" + uuid.uuid4().hex[:12])


def node_of(id_text):
    """The 14-bit node id inside an ID's UUIDv7 (design.md, IDs)."""
    value = 0
    for ch in id_text.split("_", 1)[1]:
        value = value * 32 + CROCKFORD.index(ch)
    return (value >> 48) & 0x3FFF


def forge(id_text):
    """The same ID with its last character changed: well-formed, but not
    minted (its tag no longer matches)."""
    return id_text[:-1] + ("0" if id_text[-1] != "0" else "1")


def verdicts(results):
    return [pb.Verdict.Name(r.verdict) for r in results]


@run_async
async def test_issue_open_context_and_describe(server):
    alice, bob = new_owner(), new_owner()
    async with rc.AsyncClient(server.address) as client:
        threads = await client.issue("thread", alice, 2, labels={"k": "v"})
        assert len(threads) == 2 and threads == sorted(threads)
        assert all(t.startswith("thread_") for t in threads)
        [run] = await client.issue(pb.KIND_RUN, alice, parent_id=threads[0])
        [req] = await client.issue("request", alice, parent_id=run)
        record = await client.describe(req)
        assert (record.id, record.kind, record.parent_id) == (
            req, pb.KIND_REQUEST, run)
        assert record.owner == alice and record.state == pb.STATE_LIVE
        assert (await client.describe(threads[1])).labels["k"] == "v"

        first = await client.open_context(alice)
        assert not first.thread_reused
        assert first.run_id.startswith("run_")
        assert first.request_id.startswith("req_")
        again = await client.open_context(alice, thread_id=first.thread_id)
        assert again.thread_reused and again.thread_id == first.thread_id
        assert again.run_id != first.run_id
        # Another user's thread is never reused: bob gets his own.
        stolen = await client.open_context(bob, thread_id=first.thread_id)
        assert not stolen.thread_reused
        assert stolen.thread_id != first.thread_id
        assert (await client.describe(stolen.thread_id)).owner == bob


@run_async
async def test_validate_verdicts_and_records(server):
    alice, bob = new_owner(), new_owner()
    async with rc.AsyncClient(server.address) as client:
        [thread, gone] = await client.issue("thread", alice, 2)
        [run] = await client.issue("run", alice, parent_id=thread)
        await client.cleanup(alice, ids=[gone])
        forged = forge(thread)
        items = [
            pb.ValidateItem(id=thread, expected_kind=pb.KIND_THREAD),
            pb.ValidateItem(id=thread, owner=bob),
            pb.ValidateItem(id=run, expected_kind=pb.KIND_THREAD),
            forged,
            "user_a_ws_1_xyz",
            gone,
        ]
        results = await client.validate(items, owner=alice,
                                        include_records=True)
        assert verdicts(results) == [
            "VERDICT_VALID", "VERDICT_NOT_OWNER", "VERDICT_WRONG_KIND",
            "VERDICT_FORGED", "VERDICT_MALFORMED", "VERDICT_RELEASED"
        ]
        assert results[0].record.id == thread
        assert results[5].record.state == pb.STATE_RELEASED
        # Plain strings take expected_kind.
        results = await client.validate([run], owner=alice,
                                        expected_kind="run")
        assert verdicts(results) == ["VERDICT_VALID"]


@run_async
async def test_cleanup_by_ids_connection_and_all_owned(server):
    alice, bob = new_owner(), new_owner()
    async with rc.AsyncClient(server.address) as client:
        lease = await client.grant_lease("test-cleanup", 60)
        [conn] = await client.issue("connection", alice,
                                    lease_id=lease.lease_id)
        ctx = await client.open_context(alice, connection_id=conn)
        [bobs] = await client.issue("thread", bob)
        [mine] = await client.issue("thread", alice)

        by_ids = await client.cleanup(alice, ids=[mine, bobs], reason="test")
        assert list(by_ids.released) == [mine]
        assert list(by_ids.refused) == [bobs]
        again = await client.cleanup(alice, ids=[mine])
        assert list(again.already_ended) == [mine]

        by_conn = await client.cleanup(alice, connection_id=conn)
        assert set(by_conn.released) == {conn, ctx.run_id, ctx.request_id}
        # Threads outlive connections.
        assert verdicts(await client.validate([ctx.thread_id], owner=alice)
                        ) == ["VERDICT_VALID"]

        everything = await client.cleanup(alice, all_owned=True)
        assert ctx.thread_id in everything.released
        assert verdicts(await client.validate([bobs], owner=bob)) == [
            "VERDICT_VALID"]
        with pytest.raises(ValueError):
            await client.cleanup(alice, ids=[mine], all_owned=True)
        await client.revoke_lease(lease.lease_id)


@run_async
async def test_lease_calls(server):
    alice = new_owner()
    async with rc.AsyncClient(server.address) as client:
        lease = await client.grant_lease("test-leases", 30)
        assert lease.lease_id.startswith("lease") and lease.ttl_seconds == 30
        kept = await client.keep_alive(lease.lease_id)
        assert kept.lease_id == lease.lease_id and kept.ttl_seconds == 30
        [conn] = await client.issue("connection", alice,
                                    lease_id=lease.lease_id)
        ctx = await client.open_context(alice, connection_id=conn)
        revoked = await client.revoke_lease(lease.lease_id)
        assert {conn, ctx.run_id, ctx.request_id} <= set(revoked.released)
        with pytest.raises(rc.NotFoundError):
            await client.keep_alive(lease.lease_id)


@run_async
async def test_admin_lease_calls(server):
    alice = new_owner()
    async with rc.AsyncClient(server.address) as client:
        dead = [(await client.grant_lease("py-dead", 30)).lease_id
                for _ in range(3)]
        live = (await client.grant_lease("py-live", 30)).lease_id
        [conn] = await client.issue("connection", alice, lease_id=dead[0])
        [kept] = await client.issue("connection", alice, lease_id=live)
        pages = [p async for p in client.list_leases("py-dead", page_size=2)]
        assert [len(p.leases) for p in pages] == [2, 1]
        leases = [lease for p in pages for lease in p.leases]
        assert [lease.lease_id for lease in leases] == dead
        assert leases[0].holder == "py-dead" and leases[0].ttl_seconds == 30
        assert leases[0].connections == 1 and leases[1].connections == 0
        assert 0 < leases[0].remaining_ms <= 30_000
        revoked = await client.revoke_leases("py-dead")
        assert list(revoked.revoked) == dead and revoked.released == 1
        assert verdicts(await client.validate([conn], owner=alice)) == [
            "VERDICT_RELEASED"]
        assert verdicts(await client.validate([kept], owner=alice)) == [
            "VERDICT_VALID"]
        [empty] = [p async for p in client.list_leases("py-dead")]
        assert len(empty.leases) == 0
        with pytest.raises(rc.InvalidArgumentError):
            await client.revoke_leases("")
    with rc.Client(server.address) as client:
        [page] = list(client.list_leases("py-live"))
        assert [lease.lease_id for lease in page.leases] == [live]
        assert list(client.revoke_leases("py-live").revoked) == [live]


@run_async
async def test_list_owned_pages(server):
    alice = new_owner()
    async with rc.AsyncClient(server.address) as client:
        threads = await client.issue("thread", alice, 5)
        [run] = await client.issue("run", alice, parent_id=threads[0])
        await client.cleanup(alice, ids=[threads[4]])
        pages = [p async for p in client.list_owned(alice, kind="thread",
                                                    page_size=2)]
        assert [len(p.records) for p in pages] == [2, 2]
        assert [r.id for p in pages for r in p.records] == threads[:4]
        everything = await client.owned_records(alice, include_ended=True,
                                                page_size=2)
        assert sorted(r.id for r in everything) == sorted(threads + [run])


def test_blocking_client_every_call(server):
    alice = new_owner()
    with rc.Client(server.address) as client:
        [thread] = client.issue("thread", alice)
        start = client.describe(thread).revision
        ctx = client.open_context(alice, thread_id=thread)
        assert ctx.thread_reused and ctx.thread_id == thread
        assert verdicts(client.validate([thread], owner=alice)) == [
            "VERDICT_VALID"]
        assert client.describe(thread).owner == alice
        lease = client.grant_lease("test-sync", 10)
        assert client.keep_alive(lease.lease_id).ttl_seconds == 10
        [conn] = client.issue("connection", alice, lease_id=lease.lease_id)
        assert list(client.revoke_lease(lease.lease_id).released) == [conn]
        pages = list(client.list_owned(alice, page_size=1))
        assert len(pages) == 3  # thread, run, request
        released = client.cleanup(alice, all_owned=True).released
        assert set(released) == {thread, ctx.run_id, ctx.request_id}
        with pytest.raises(rc.NotFoundError):
            client.describe(forge(thread))
        # Watch: the events of this owner's thread, from its revision.
        stream = client.watch(start, tenant=alice.tenant)
        first = next(stream)
        stream.close()
        assert first.revision == start and first.record.id == thread
        assert first.type == pb.EVENT_TYPE_ISSUED


@run_async
async def test_errors_are_typed_and_carry_details(server):
    async with rc.AsyncClient(server.address) as client:
        with pytest.raises(rc.InvalidArgumentError) as bad:
            await client.issue("thread", rc.owner("acme", ""))
        assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT
        fields = [f for f, _ in bad.value.field_violations]
        assert fields == ["owner.user_id"], bad.value.field_violations
        invalid_argument = grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert bad.value.details.code == invalid_argument

        alice = new_owner()
        [thread] = await client.issue("thread", alice)
        with pytest.raises(rc.NotFoundError) as missing:
            await client.describe(forge(thread))
        assert missing.value.details is None
        with pytest.raises(rc.InvalidArgumentError) as malformed:
            await client.describe("thread_" + "0" * 26)
        assert [f for f, _ in malformed.value.field_violations] == ["id"]
        await client.cleanup(alice, ids=[thread])
        with pytest.raises(rc.FailedPreconditionError):
            await client.issue("run", alice, parent_id=thread)

        with pytest.raises(rc.ResourceExhaustedError) as big:
            await client.issue("thread", alice, 100000)
        assert not big.value.throttled
        assert [s for s, _ in big.value.quota_violations] == ["count"]
        assert ("count", big.value.field_violations[0][1]) == (
            big.value.field_violations[0])


def test_quota_and_out_of_range_carry_details():
    limited = ServerProcess(["--owner_quota=3", "--event_history=4"]).start()
    try:
        alice = new_owner()
        with rc.Client(limited.address) as client:
            client.issue("thread", alice, 3)
            with pytest.raises(rc.ResourceExhaustedError) as quota:
                client.issue("thread", alice)
            assert not quota.value.throttled
            assert len(quota.value.quota_violations) == 1
            for _ in range(3):
                client.issue("thread", new_owner())
            with pytest.raises(rc.OutOfRangeError):
                next(client.watch(1))
    finally:
        limited.close()


@run_async
async def test_throttle_carries_retry_info_and_is_retried():
    throttled = ServerProcess(["--caller_rate=5", "--caller_burst=1"]).start()
    try:
        alice = new_owner()
        retries = []
        async with rc.AsyncClient(throttled.address, max_attempts=1) as once:
            await once.issue("thread", alice)
            with pytest.raises(rc.ResourceExhaustedError) as refused:
                await once.issue("thread", alice)
            assert refused.value.throttled
            assert 0 < refused.value.retry_delay <= 1.0
            assert refused.value.quota_violations
        async with rc.AsyncClient(
                throttled.address, max_attempts=10,
                deadline=10.0 * time_scale(),
                on_retry=lambda *a: retries.append(a)) as patient:
            # Non-repeatable calls are retried too when throttled.
            ids = [(await patient.issue("thread", alice))[0] for _ in range(4)]
        assert len(set(ids)) == 4
        assert retries and all(r[2].throttled for r in retries)
        assert all(r[3] >= r[2].retry_delay for r in retries)
    finally:
        throttled.close()


def write_callers(path, callers):
    with open(path, "w") as f:
        json.dump({"callers": callers}, f)


@run_async
async def test_bearer_token_authenticates():
    token = "token-" + uuid.uuid4().hex
    s = ServerProcess()
    write_callers(os.path.join(s.dir, "callers.json"), [{
        "name": "gw", "role": "ROLE_GATEWAY", "tenants": ["acme"],
        "token_sha256": [hashlib.sha256(token.encode()).hexdigest()]}])
    s.args = [f"--callers_file={s.dir}/callers.json"]
    s.start()
    try:
        async with rc.AsyncClient(s.address, bearer_token=token) as client:
            assert len(await client.issue("thread", new_owner("acme"))) == 1
            with pytest.raises(rc.PermissionDeniedError):
                await client.issue("thread", new_owner("other-tenant"))
        async with rc.AsyncClient(s.address, bearer_token="wrong") as client:
            with pytest.raises(rc.UnauthenticatedError):
                await client.issue("thread", new_owner("acme"))
        with pytest.raises(ValueError, match="bearer_token"):
            rc.AsyncClient(s.address, bearer_token="bad\ntoken")
    finally:
        s.close()


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_cert(d, name, san, usage):
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
            "-subj", "/CN=" + name, cwd=d)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey",
            "ca.key", "-CAcreateserial", "-days", "1", "-extfile",
            name + ".ext", "-out", name + ".crt", cwd=d)


@run_async
async def test_tls_and_mutual_tls():
    s = ServerProcess()
    d = s.dir
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out",
            "ca.crt", "-days", "1", "-subj", "/CN=test-ca", cwd=d)
    make_cert(d, "server", "DNS:registrar.test", "serverAuth")
    make_cert(d, "gw", "URI:spiffe://test/gw", "clientAuth")
    write_callers(os.path.join(d, "callers.json"), [{
        "name": "gw", "role": "ROLE_GATEWAY", "tenants": ["acme"],
        "cert_identities": ["spiffe://test/gw"]}])
    s.args = [f"--tls_cert={d}/server.crt", f"--tls_key={d}/server.key",
              f"--tls_client_ca={d}/ca.crt",
              f"--callers_file={d}/callers.json"]
    s.start()
    try:
        tls = dict(tls_ca_file=f"{d}/ca.crt", tls_server_name="registrar.test",
                   deadline=5.0 * time_scale())
        async with rc.AsyncClient(s.address, tls_cert_file=f"{d}/gw.crt",
                                  tls_key_file=f"{d}/gw.key", **tls) as mtls:
            assert len(await mtls.issue("thread", new_owner("acme"))) == 1
        # TLS without the client certificate: refused at the handshake.
        async with rc.AsyncClient(s.address, max_attempts=1, **tls) as anon:
            with pytest.raises(rc.UnavailableError):
                await anon.validate(["thread_" + "0" * 26],
                                    owner=new_owner("acme"))
        # Server-authenticated TLS only (no client certificates asked).
        plain_tls = ServerProcess([f"--tls_cert={d}/server.crt",
                                   f"--tls_key={d}/server.key"]).start()
        try:
            async with rc.AsyncClient(plain_tls.address, **tls) as client:
                assert len(await client.issue("thread", new_owner())) == 1
            async with rc.AsyncClient(plain_tls.address,
                                      max_attempts=1) as plaintext:
                with pytest.raises(rc.UnavailableError):
                    await plaintext.issue("thread", new_owner())
        finally:
            plain_tls.close()
        with pytest.raises(ValueError, match="tls_ca_file"):
            rc.AsyncClient(s.address, tls_ca_file=f"{d}/missing.pem")
        with pytest.raises(ValueError, match="give both"):
            rc.ClientOptions(tls_cert_file=f"{d}/gw.crt")
    finally:
        s.close()


def process_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def established_rx_bytes(port):
    """Bytes waiting in the receive queues of the established connections
    to local `port` (/proc/net/tcp and tcp6: gRPC uses v4-mapped IPv6
    sockets)."""
    total = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01":
                    total += int(fields[4].split(":")[1], 16)
    return total


@run_async
async def test_retry_on_unavailable_across_a_server_restart():
    s = ServerProcess(store="rocksdb", args=["--durability=os"]).start()
    try:
        retried = asyncio.Event()
        retries = []

        def on_retry(method, attempt, error, delay):
            retries.append((method, error.code))
            retried.set()

        alice = new_owner()
        client = rc.AsyncClient(s.address, deadline=30.0 * time_scale(),
                                max_attempts=1000, max_backoff=0.2,
                                on_retry=on_retry)
        [thread] = await client.issue("thread", alice)
        s.stop(signal.SIGKILL)
        # A repeatable call keeps retrying while the server is down...
        validating = asyncio.ensure_future(client.validate([thread],
                                                           owner=alice))
        await asyncio.wait_for(retried.wait(), 10 * time_scale())
        assert not validating.done()
        assert retries[0] == ("Validate", grpc.StatusCode.UNAVAILABLE)
        # ... and a non-repeatable one too while it cannot be sent at all.
        issuing = asyncio.ensure_future(client.issue("thread", alice))
        await async_wait_until(
            lambda: asyncio.sleep(0, result=any(r[0] == "Issue"
                                                for r in retries)),
            10, "Issue to be retried while unsent")
        s.start(port=s.port)
        assert verdicts(await validating) == ["VERDICT_VALID"]
        assert len(await issuing) == 1

        # A non-repeatable call that reached the server and lost its reply
        # is not retried: the request sits in the stopped server's socket
        # when the server dies.
        retries.clear()
        s.send_signal(signal.SIGSTOP)
        wait_until(lambda: process_state(s.proc.pid) == "T", 10,
                   "the server to stop")
        before = established_rx_bytes(s.port)
        lost = asyncio.ensure_future(client.issue("thread", alice))
        await async_wait_until(
            lambda: asyncio.sleep(
                0, result=established_rx_bytes(s.port) > before),
            10, "the Issue to reach the server's socket")
        s.stop(signal.SIGKILL)
        with pytest.raises(rc.UnavailableError):
            await lost
        assert [r for r in retries if r[0] == "Issue"] == []
        await client.close()
    finally:
        s.close()


@run_async
async def test_round_robin_and_failover_across_endpoints():
    a = ServerProcess(["--node_id=1"]).start()
    b = ServerProcess(["--node_id=2"]).start()
    try:
        alice = new_owner()
        async with rc.AsyncClient([a.address, b.address]) as client:
            ids = [(await client.issue("thread", alice))[0] for _ in range(6)]
            assert sorted(node_of(i) for i in ids) == [1, 1, 1, 2, 2, 2]
            b.stop(signal.SIGKILL)
            # Once the client has seen b's connection close, b's calls can
            # no longer be in flight there.
            await async_wait_until(
                lambda: asyncio.sleep(0, result=client.endpoint_states()[1][1]
                                      != grpc.ChannelConnectivity.READY),
                10, "the client to see b's connection close")
            # Every call still succeeds: unsent calls move on to `a`, and
            # b's failing channel is skipped.
            ids = [(await client.issue("thread", alice))[0] for _ in range(6)]
            assert [node_of(i) for i in ids] == [1] * 6
            results = await asyncio.gather(*[
                client.validate([i], owner=alice) for i in ids])
            assert [verdicts(r) for r in results] == [["VERDICT_VALID"]] * 6
    finally:
        a.close()
        b.close()


@run_async
async def test_watch_resumes_after_a_server_restart():
    s = ServerProcess(store="rocksdb", args=["--durability=os"]).start()
    try:
        alice = new_owner("watch-tenant")
        events, reconnects = [], []
        client = rc.AsyncClient(
            s.address, max_backoff=0.2,
            on_retry=lambda m, *_: reconnects.append(m))
        [first] = await client.issue("thread", alice)
        start = (await client.describe(first)).revision

        async def collect():
            async for event in client.watch(start, tenant=alice.tenant):
                events.append(event)

        watcher = asyncio.ensure_future(collect())
        issued = [first] + await client.issue("thread", alice, 2)

        async def have(n):
            return len(events) >= n

        await async_wait_until(lambda: have(3), 10, "3 events")
        s.stop(signal.SIGKILL)
        s.start(port=s.port)
        await async_wait_until(
            lambda: asyncio.sleep(0, result="Watch" in reconnects), 10,
            "the watch to reconnect")
        issued += await client.issue("thread", alice, 3)
        await async_wait_until(lambda: have(6), 20, "6 events")
        watcher.cancel()
        revisions = [e.revision for e in events]
        assert revisions == list(range(start, start + len(events)))
        assert [e.record.id for e in events] == issued
        await client.close()
    finally:
        s.close()


@run_async
async def test_lease_keeper_renews_and_revokes_on_close(server):
    alice = new_owner()
    async with rc.AsyncClient(server.address) as client:
        async with rc.LeaseKeeper(client, "keeper-test", 1) as keeper:
            conn = await keeper.open_connection(alice)
            loop = asyncio.get_running_loop()
            granted_until = keeper.renewed_until
            # Alive past three TTLs: renewed at ttl/3.
            await async_wait_until(
                lambda: asyncio.sleep(
                    0, result=keeper.renewed_until > granted_until + 3),
                10, "three TTLs of renewals")
            assert keeper.healthy and keeper.renewed_until > loop.time()
            assert verdicts(await client.validate([conn], owner=alice)) == [
                "VERDICT_VALID"]
        assert keeper.lost.is_set() and keeper.error is None
        record = await client.describe(conn)
        assert record.state == pb.STATE_RELEASED


@run_async
async def test_lease_keeper_reports_loss(server):
    alice = new_owner()
    losses = []
    async with rc.AsyncClient(server.address) as client:
        keeper = await rc.LeaseKeeper(client, "keeper-loss", 3,
                                      on_loss=losses.append).start()
        conn = await keeper.open_connection(alice)
        await client.revoke_lease(keeper.lease_id)  # behind its back
        await asyncio.wait_for(keeper.lost.wait(), 10 * time_scale())
        assert len(losses) == 1 and isinstance(losses[0], rc.NotFoundError)
        assert keeper.error is losses[0] and not keeper.healthy
        with pytest.raises(rc.FailedPreconditionError):
            await keeper.open_connection(alice)
        assert await keeper.close() is None
        assert (await client.describe(conn)).state == pb.STATE_RELEASED


def test_reconnect_backoff_is_capped_like_the_cpp_client():
    """Channels retry a vanished endpoint at most max_reconnect_backoff
    apart (1 s by default, as client/client.cc), starting at a tenth of it
    (at most 100 ms), instead of gRPC's default growing to 120 s; an
    explicit channel option still wins (it comes last)."""
    def args(**kw):
        return rc.ClientOptions(**kw).channel_arguments()

    default = dict(args())
    assert default["grpc.max_reconnect_backoff_ms"] == 1000
    assert default["grpc.initial_reconnect_backoff_ms"] == 100
    short = dict(args(max_reconnect_backoff=0.25))
    assert short["grpc.max_reconnect_backoff_ms"] == 250
    assert short["grpc.initial_reconnect_backoff_ms"] == 25
    overridden = args(
        channel_options=[("grpc.max_reconnect_backoff_ms", 5000)])
    assert overridden[-1] == ("grpc.max_reconnect_backoff_ms", 5000)


def test_retry_policy_matches_the_cpp_client():
    """retry.retry_delay decides like client/client.cc: UNAVAILABLE only for
    repeatable calls (plus calls gRPC never sent), throttles for every
    call, nothing else; never past the deadline or max_attempts."""
    from registrar_client import errors, retry

    options = rc.ClientOptions(max_attempts=3, initial_backoff=0.05,
                               max_backoff=2.0)
    unavailable = errors.make_error(grpc.StatusCode.UNAVAILABLE,
                                    "Socket closed", [])
    unsent = errors.make_error(
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect to all addresses; last error: refused", [])
    retry_info = pb.rpc_details.RetryInfo()
    retry_info.retry_delay.FromMilliseconds(300)
    status = pb.rpc_status.Status(code=8, message="slow down")
    status.details.add().Pack(retry_info)
    throttled = errors.make_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down",
        [(errors.DETAILS_KEY, status.SerializeToString())])
    info = pb.rpc_details.ErrorInfo(domain="registrar.dev",
                                    reason="NOT_APPLIED")
    not_applied_status = pb.rpc_status.Status(code=14, message="no writer")
    not_applied_status.details.add().Pack(info)
    not_applied = errors.make_error(
        grpc.StatusCode.UNAVAILABLE, "no writer",
        [(errors.DETAILS_KEY, not_applied_status.SerializeToString())])
    quota = errors.make_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota", [])
    invalid = errors.make_error(grpc.StatusCode.INVALID_ARGUMENT, "bad", [])
    methods = ["Issue", "OpenContext", "Validate", "Cleanup", "GrantLease",
               "KeepAlive", "RevokeLease", "Describe", "ListOwned"]
    assert len(methods) == 9
    for method in methods:
        repeatable = method in ("Validate", "Cleanup", "KeepAlive",
                                "Describe", "ListOwned")
        delay = retry.retry_delay(options, method, 1, unavailable, 10.0)
        assert (delay is not None) == repeatable, method
        if repeatable:
            assert 0.025 <= delay <= 0.05
        assert retry.retry_delay(options, method, 1, unsent, 10.0) is not None
        assert retry.retry_delay(options, method, 1, throttled, 10.0) >= 0.3
        assert retry.retry_delay(options, method, 1, not_applied,
                                 10.0) is not None
        assert retry.retry_delay(options, method, 1, quota, 10.0) is None
        assert retry.retry_delay(options, method, 1, invalid, 10.0) is None
        # Out of attempts, or the wait would pass the deadline.
        assert retry.retry_delay(options, method, 3, throttled, 10.0) is None
        assert retry.retry_delay(options, method, 1, throttled, 0.2) is None
    assert throttled.throttled and throttled.retry_delay == pytest.approx(0.3)
    assert not quota.throttled
    assert not_applied.not_applied and not unavailable.not_applied
    # Backoff doubles per attempt up to max_backoff, jittered into [d/2, d].
    for attempt, nominal in ((1, 0.05), (2, 0.1), (3, 0.2), (10, 2.0)):
        assert nominal / 2 <= retry.backoff(options, attempt) <= nominal
