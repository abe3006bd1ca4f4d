#!/usr/bin/env python3
"""A small WebSocket gateway on Registrar: the old system's flow done right.

- One lease per gateway process (LeaseKeeper, renewed at TTL/3).
- On connect: the user is whoever the HMAC-signed token in the
  `Authorization: Bearer` header says (tokens.py); an unsigned, forged or
  expired token is refused before the upgrade (HTTP 401). A connection ID
  bound to the lease is issued for that user.
- Per user message (JSON `{"text": ..., "thread_id": optional}`): one
  OpenContext with the user from the token, never from the ID text: a
  thread_id that is not a live thread of this user just gets a new thread.
  The reply carries the thread, run and request IDs and whether the thread
  was reused.
- On disconnect (clean close or dropped TCP): Cleanup by connection, which
  releases the connection and its runs and requests; threads stay.
- On crash (SIGKILL, OOM, power loss): nothing to do here: the lease
  expires one TTL after the last renewal and the server releases every
  connection bound to it, with their runs and requests.
- On lease loss (the server says NOT_FOUND): every WebSocket is closed with
  1012 and the process exits 3, for its supervisor to restart it.
- SIGTERM/SIGINT: stop accepting, close WebSockets (1001), clean up, revoke
  the lease, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import http
import json
import logging
import os
import signal
import socket
import sys
from typing import Dict, Optional

import websockets

import registrar_client as rc
import tokens

log = logging.getLogger("gateway")

MAX_MESSAGE_BYTES = 64 * 1024
MAX_THREAD_ID_BYTES = 64  # longer than any Registrar ID


def bearer(headers) -> str:
    value = headers.get("Authorization", "")
    return value[7:].strip() if value.startswith("Bearer ") else ""


def parse_message(raw) -> Optional[dict]:
    """{"text": str, "thread_id": str} or None for anything else."""
    if not isinstance(raw, str):
        return None
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    thread_id = message.get("thread_id") or ""
    text = message.get("text") or ""
    if not (isinstance(thread_id, str) and isinstance(text, str)):
        return None
    if len(thread_id) > MAX_THREAD_ID_BYTES:
        return None
    return {"text": text, "thread_id": thread_id}


class Gateway:
    """The WebSocket handlers, the Registrar client and the lease."""

    def __init__(self, client: rc.AsyncClient, secret: bytes,
                 holder: str) -> None:
        self.client = client
        self.secret = secret
        self.holder = holder
        self.keeper: Optional[rc.LeaseKeeper] = None
        self.sockets: Dict[str, websockets.WebSocketServerProtocol] = {}
        self.lease_lost = asyncio.Event()

    async def process_request(self, path, headers):
        """Refuses the upgrade (401) unless the token is genuine."""
        if tokens.verify(self.secret, bearer(headers)) is None:
            return http.HTTPStatus.UNAUTHORIZED, [], b"invalid token\n"
        return None

    async def on_lease_loss(self, error: rc.RegistrarError) -> None:
        log.error("lease %s lost (%s): closing every WebSocket",
                  self.keeper.lease_id, error.code.name)
        self.lease_lost.set()
        await asyncio.gather(*[
            ws.close(1012, "gateway lost its lease")
            for ws in list(self.sockets.values())
        ])

    async def handle(self, ws) -> None:
        identity = tokens.verify(self.secret, bearer(ws.request_headers))
        if identity is None:  # process_request already refused it
            await ws.close(1008, "invalid token")
            return
        owner = rc.owner(*identity)
        try:
            conn_id = await self.keeper.open_connection(
                owner, labels={"gateway": self.holder})
        except rc.RegistrarError as e:
            await ws.close(1013, f"registrar: {e.code.name}")
            return
        self.sockets[conn_id] = ws
        try:
            await ws.send(json.dumps({"type": "hello",
                                      "connection_id": conn_id}))
            async for raw in ws:
                await ws.send(json.dumps(await self.reply(owner, conn_id,
                                                          raw)))
        except websockets.ConnectionClosed:
            pass
        finally:
            del self.sockets[conn_id]
            await self.release(owner, conn_id)

    async def reply(self, owner, conn_id: str, raw) -> dict:
        message = parse_message(raw)
        if message is None:
            return {"type": "error", "error": "expected JSON "
                    '{"text": string, "thread_id": optional string}'}
        try:
            ctx = await self.client.open_context(
                owner, thread_id=message["thread_id"], connection_id=conn_id)
        except rc.RegistrarError as e:
            return {"type": "error", "error": e.code.name}
        return {
            "type": "reply",
            "thread_id": ctx.thread_id,
            "run_id": ctx.run_id,
            "request_id": ctx.request_id,
            "thread_reused": ctx.thread_reused,
            "text_bytes": len(message["text"]),
        }

    async def release(self, owner, conn_id: str) -> None:
        if self.lease_lost.is_set():
            return  # the server already ended it with the lease
        try:
            await self.client.cleanup(owner, connection_id=conn_id,
                                      reason="websocket closed")
        except rc.RegistrarError as e:
            # The lease still bounds it: the TTL releases what this missed.
            log.warning("cleanup of %s failed: %s", conn_id, e.code.name)


async def serve(args) -> int:
    secret = tokens.read_secret(args.token_secret_file)
    options = rc.ClientOptions(
        targets=args.registrar, tls_ca_file=args.registrar_ca,
        tls_cert_file=args.registrar_cert, tls_key_file=args.registrar_key,
        bearer_token=os.environ.get("REGISTRAR_TOKEN", ""))
    async with rc.AsyncClient(options) as client:
        gateway = Gateway(client, secret, args.holder)
        gateway.keeper = rc.LeaseKeeper(client, args.holder, args.lease_ttl,
                                        on_loss=gateway.on_lease_loss)
        await gateway.keeper.start()
        host, port = args.listen.rsplit(":", 1)
        server = await websockets.serve(
            gateway.handle, host, int(port),
            process_request=gateway.process_request,
            max_size=MAX_MESSAGE_BYTES, compression=None,
            ping_interval=args.ping_interval,
            ping_timeout=args.ping_interval)
        bound = server.sockets[0].getsockname()
        log.info("gateway %s on %s:%d, lease %s (ttl %ds)", args.holder,
                 bound[0], bound[1], gateway.keeper.lease_id,
                 gateway.keeper.ttl_seconds)
        if args.port_file:
            tmp = args.port_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(f"{bound[1]}\n")
            os.replace(tmp, args.port_file)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        lost = asyncio.ensure_future(gateway.lease_lost.wait())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([lost, stopping],
                           return_when=asyncio.FIRST_COMPLETED)
        server.close()  # closes every WebSocket with 1001; handlers clean up
        await server.wait_closed()
        if gateway.lease_lost.is_set():
            return 3
        try:
            await gateway.keeper.close()
        except rc.RegistrarError as e:
            log.warning("revoke failed (%s): the TTL ends the lease",
                        e.code.name)
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8765")
    parser.add_argument("--registrar", action="append",
                        help="Registrar endpoint host:port (repeatable; "
                        "default 127.0.0.1:50051)")
    parser.add_argument("--registrar-ca", default="")
    parser.add_argument("--registrar-cert", default="")
    parser.add_argument("--registrar-key", default="")
    parser.add_argument("--token-secret-file", required=True)
    parser.add_argument("--holder", default=f"gateway-{socket.gethostname()}"
                        f"-{os.getpid()}")
    parser.add_argument("--lease-ttl", type=int, default=30)
    parser.add_argument("--ping-interval", type=float, default=20,
                        help="WebSocket ping interval and timeout, seconds: "
                        "how soon a silently dead peer is noticed")
    parser.add_argument("--port-file", default="",
                        help="write the bound port here once serving")
    args = parser.parse_args()
    args.registrar = args.registrar or ["127.0.0.1:50051"]
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    sys.exit(asyncio.run(serve(args)))


if __name__ == "__main__":
    main()
