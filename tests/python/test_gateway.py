"""The example gateway (examples/gateway) end to end: the real registrar,
the gateway as its own process, and 200 users on real WebSockets.

Users connect several times each and send messages on every connection;
then some connections close cleanly, some drop their TCP connection, and
the gateway process is SIGKILLed with connections still open. Afterwards
every record of a dropped or crashed connection is released (by Cleanup or
by the lease's expiry), threads survive and are reused by their owner, no
user ever receives or releases another user's IDs, and each user's records
(ListOwned) are exactly the expected ones."""

import asyncio
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys

import pytest
import websockets

import registrar_client as rc
from registrar_client import pb
from harness import (SOURCE_DIR, ServerProcess, async_wait_until,
                     gateway_command, run_async, time_scale, wait_until)

sys.path.insert(0, str(SOURCE_DIR / "examples/gateway"))
import tokens  # noqa: E402  pylint: disable=wrong-import-position

USERS = 200
CONNECTIONS_PER_USER = 3
TENANT = "gw-tenant"
LEASE_TTL = 2 * time_scale()
SECRET = b"test-secret-" + os.urandom(16).hex().encode()
# Connections opened at once (asyncio's listen backlog is 100).
OPENING = 50


class GatewayProcess:
    """examples/gateway/gateway.py as a child process."""

    def __init__(self, tmp, registrar, name):
        self.port_file = os.path.join(tmp, name + ".port")
        self.log_path = os.path.join(tmp, name + ".log")
        secret_file = os.path.join(tmp, "secret")
        with open(secret_file, "wb") as f:
            f.write(SECRET)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            gateway_command("--listen=127.0.0.1:0",
                            f"--registrar={registrar}",
                            f"--token-secret-file={secret_file}",
                            f"--holder={name}", f"--lease-ttl={LEASE_TTL}",
                            f"--port-file={self.port_file}"),
            stdout=self.log, stderr=subprocess.STDOUT)

        def ready():
            assert self.proc.poll() is None, self.output()
            try:
                with open(self.port_file) as f:
                    return int(f.read())
            except (OSError, ValueError):
                return None

        self.port = wait_until(ready, 30, "the gateway to listen")

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read()[-3000:].decode(errors="replace")

    def stop(self, sig):
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30 * time_scale())
        finally:
            self.log.close()

    def exit_code(self):
        """Waits (bounded) for the gateway to exit by itself; its status."""
        try:
            return self.proc.wait(timeout=30 * time_scale())
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the gateway did not exit by itself")
        finally:
            self.log.close()


class User:
    """One user's view: what it was sent, and what should exist."""

    def __init__(self, index):
        self.owner = rc.owner(TENANT, f"user-{index:03d}")
        self.token = tokens.mint(SECRET, TENANT, self.owner.user_id)
        self.sockets = []
        self.conn_ids = []
        self.threads = []  # one per connection, then extra ones
        self.received = set()  # every ID this user was sent
        self.ended = set()  # IDs that must have ended
        self.live_contexts = set()  # runs/requests that must be live


async def connect(port, token, opening):
    async with opening:
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}/",
            extra_headers={"Authorization": "Bearer " + token},
            compression=None, open_timeout=30 * time_scale())
    hello = json.loads(await ws.recv())
    assert hello["type"] == "hello", hello
    return ws, hello["connection_id"]


async def send(ws, user, thread_id=""):
    await ws.send(json.dumps({"text": "hello", "thread_id": thread_id}))
    reply = json.loads(await ws.recv())
    assert reply["type"] == "reply", reply
    for key, prefix in (("thread_id", "thread_"), ("run_id", "run_"),
                        ("request_id", "req_")):
        assert reply[key].startswith(prefix), reply
    user.received.update(
        (reply["thread_id"], reply["run_id"], reply["request_id"]))
    return reply


async def records_by_id(client, user):
    records = await client.owned_records(user.owner, include_ended=True,
                                         page_size=1000)
    by_id = {r.id: r for r in records}
    assert len(by_id) == len(records)
    return by_id


async def ended_states(client, users, ids_of):
    """{id: state} of ids_of(user) for every user, in one Validate each."""
    states = {}
    for user in users:
        ids = ids_of(user)
        results = await client.validate(ids, owner=user.owner,
                                        include_records=True)
        assert len(results) == len(ids)
        states.update({r.id: r.record.state for r in results})
    return states


async def wait_all_ended(client, users, ids_of, state, what):
    async def done():
        states = await ended_states(client, users, ids_of)
        return all(s == state for s in states.values())

    await async_wait_until(done, 20 + LEASE_TTL, what, interval=0.2)


async def check_records(client, users, live_threads_only=False):
    """ListOwned per user equals what the test expects: the threads and
    the open connection's contexts live, everything else ended, nothing
    more."""
    for user in users:
        by_id = await records_by_id(client, user)
        assert set(by_id) == user.received, user.owner
        live = {i for i, r in by_id.items() if r.state == pb.STATE_LIVE}
        expected_live = set(user.threads) | (
            set() if live_threads_only else user.live_contexts)
        assert live == expected_live, user.owner
        assert all(r.owner == user.owner for r in by_id.values())


@run_async
async def test_gateway_end_to_end(tmp_path):
    server = ServerProcess(["--tick_interval=50ms"]).start()
    gateway = GatewayProcess(str(tmp_path), server.address, "gw-1")
    users = [User(i) for i in range(USERS)]
    opening = asyncio.Semaphore(OPENING)
    client = rc.AsyncClient(server.address, deadline=10.0 * time_scale())
    try:
        # A forged or missing token never reaches a handler.
        forged = tokens.mint(b"not-the-secret-0123456789", TENANT, "user-000")
        for bad in (forged, "", users[0].token[:-2]):
            with pytest.raises(websockets.InvalidStatusCode) as refused:
                await connect(gateway.port, bad, opening)
            assert refused.value.status_code == 401

        # Phase 1: every user opens its connections and talks on each.
        async def open_user(user):
            for _ in range(CONNECTIONS_PER_USER):
                ws, conn_id = await connect(gateway.port, user.token, opening)
                user.sockets.append(ws)
                user.conn_ids.append(conn_id)
                user.received.add(conn_id)

            async def first(ws):
                reply = await send(ws, user)
                assert not reply["thread_reused"]
                return reply

            replies = await asyncio.gather(*[first(ws)
                                             for ws in user.sockets])
            user.threads = [r["thread_id"] for r in replies]
            user.first_contexts = [(r["run_id"], r["request_id"])
                                   for r in replies]
            # The next message on connection 0 continues its thread.
            again = await send(user.sockets[0], user, user.threads[0])
            assert again["thread_reused"]
            assert again["thread_id"] == user.threads[0]
            user.extra0 = (again["run_id"], again["request_id"])

        await asyncio.gather(*[open_user(u) for u in users])
        for user in users:
            assert len(user.conn_ids) == CONNECTIONS_PER_USER
            assert len(set(user.threads)) == CONNECTIONS_PER_USER

        # A user who sends another user's thread ID gets a thread of their
        # own: identity comes from the token, never from the ID text.
        async def hijack(user, victim):
            reply = await send(user.sockets[1], user, victim.threads[0])
            assert not reply["thread_reused"]
            assert reply["thread_id"] not in victim.received
            user.threads.append(reply["thread_id"])
            user.extra1 = (reply["run_id"], reply["request_id"])

        await asyncio.gather(*[hijack(u, users[(i + 1) % USERS])
                               for i, u in enumerate(users)])
        junk = users[0].sockets[2]
        await junk.send("not json")
        assert json.loads(await junk.recv())["type"] == "error"

        # No ID was ever sent to two users, and each is valid for its user.
        owners_of = collections.Counter(i for u in users for i in u.received)
        assert len(owners_of) == sum(len(u.received) for u in users)
        assert max(owners_of.values()) == 1
        for user in users:
            ids = sorted(user.received)
            results = await client.validate(ids, owner=user.owner)
            assert len(results) == len(ids)
            assert {r.verdict for r in results} == {pb.VERDICT_VALID}

        # Phase 2: connection 0 closes cleanly, connection 1 drops its TCP
        # connection; connection 2 stays open.
        for user in users:
            run0, req0 = user.first_contexts[0]
            run1, req1 = user.first_contexts[1]
            user.ended |= {user.conn_ids[0], run0, req0, *user.extra0,
                           user.conn_ids[1], run1, req1, *user.extra1}
            user.live_contexts = {user.conn_ids[2], *user.first_contexts[2]}
        await asyncio.gather(*[u.sockets[0].close() for u in users])
        for user in users:
            user.sockets[1].transport.abort()
        await wait_all_ended(client, users, lambda u: sorted(u.ended),
                             pb.STATE_RELEASED,
                             "the closed and dropped connections' cleanup")
        await check_records(client, users)

        # Phase 3: the gateway dies with connection 2 of every user open.
        assert gateway.stop(signal.SIGKILL) == -signal.SIGKILL
        crashed = {u.owner.user_id: sorted(u.live_contexts) for u in users}
        await wait_all_ended(client, users,
                             lambda u: crashed[u.owner.user_id],
                             pb.STATE_EXPIRED, "the lease to expire")
        for user in users:
            user.ended |= user.live_contexts
            user.live_contexts = set()
        await check_records(client, users, live_threads_only=True)
        for user in users:
            user.sockets[2].transport.abort()

        # Phase 4: a new gateway; every user's threads are theirs to reuse.
        gateway = GatewayProcess(str(tmp_path), server.address, "gw-2")

        async def come_back(user):
            ws, conn_id = await connect(gateway.port, user.token, opening)
            user.received.add(conn_id)
            for thread in (user.threads[0], user.threads[2]):
                reply = await send(ws, user, thread)
                assert reply["thread_reused"] and reply["thread_id"] == thread
            await ws.close()

        await asyncio.gather(*[come_back(u) for u in users])

        async def all_released():
            for user in users:
                by_id = await records_by_id(client, user)
                if {i for i, r in by_id.items()
                        if r.state == pb.STATE_LIVE} != set(user.threads):
                    return False
            return True

        await async_wait_until(all_released, 20, "the new connections' "
                               "cleanup", interval=0.2)
        await check_records(client, users, live_threads_only=True)
        assert gateway.stop(signal.SIGTERM) == 0, gateway.output()
    except BaseException:
        print("gateway log:\n" + gateway.output())
        raise
    finally:
        if gateway.proc.poll() is None:
            gateway.stop(signal.SIGKILL)
        await client.close()
        server.close()


@contextlib.asynccontextmanager
async def one_user_gateway(tmp_path, name):
    """A server, a gateway and one user's WebSocket that has sent one
    message: yields (server, gateway, user, ws, conn_id, reply)."""
    server = ServerProcess().start()
    gateway = GatewayProcess(str(tmp_path), server.address, name)
    try:
        user = User(0)
        ws, conn_id = await connect(gateway.port, user.token,
                                    asyncio.Semaphore(1))
        reply = await send(ws, user)
        yield server, gateway, user, ws, conn_id, reply
    finally:
        if gateway.proc.poll() is None:
            gateway.stop(signal.SIGKILL)
        server.close()


@run_async
async def test_gateway_closes_sockets_and_exits_when_its_lease_is_lost(
        tmp_path):
    async with one_user_gateway(tmp_path, "gw-lost") as (
            server, gateway, _, ws, conn_id, _):
        async with rc.AsyncClient(server.address) as client:
            lease_id = (await client.describe(conn_id)).lease_id
            assert lease_id.startswith("lease")
            await client.revoke_lease(lease_id)  # behind the gateway's back
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10 * time_scale() + LEASE_TTL)
        assert closed.value.code == 1012
        # It exits by itself, after closing the sockets: no signal is sent.
        assert gateway.exit_code() == 3, gateway.output()


@run_async
async def test_gateway_sigterm_releases_open_connections_and_its_lease(
        tmp_path):
    async with one_user_gateway(tmp_path, "gw-term") as (
            server, gateway, user, ws, conn_id, reply):
        gateway.proc.send_signal(signal.SIGTERM)
        # Reading lets the client answer the gateway's closing handshake.
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.code == 1001
        # One SIGTERM only: a second one, once asyncio.run has removed the
        # handlers on its way out, would kill the process (-15).
        assert await asyncio.get_running_loop().run_in_executor(
            None, gateway.exit_code) == 0, gateway.output()
        async with rc.AsyncClient(server.address) as client:
            record = await client.describe(conn_id)
            assert record.state == pb.STATE_RELEASED
            with pytest.raises(rc.NotFoundError):
                await client.keep_alive(record.lease_id)
            results = await client.validate(
                [reply["thread_id"], reply["run_id"]], owner=user.owner)
            assert [r.verdict for r in results] == [pb.VERDICT_VALID,
                                                    pb.VERDICT_RELEASED]
