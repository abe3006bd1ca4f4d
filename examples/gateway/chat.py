#!/usr/bin/env python3
"""A terminal client for the example gateway: each line you type is one
user message; the gateway's reply (thread, run and request IDs) is printed.
The thread of the previous reply is sent along, so the conversation stays
in one thread.

    python3 chat.py --url ws://127.0.0.1:8765/ --token "$(python3 tokens.py \
        --secret-file secret mint --tenant acme --user alice)"
"""

import argparse
import asyncio
import json
import sys

import websockets


async def chat(url: str, token: str) -> None:
    async with websockets.connect(
            url, extra_headers={"Authorization": "Bearer " + token}) as ws:
        print(await ws.recv())
        thread = ""
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            await ws.send(json.dumps({"text": line.rstrip("\n"),
                                      "thread_id": thread}))
            reply = json.loads(await ws.recv())
            print(json.dumps(reply))
            thread = reply.get("thread_id", thread)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8765/")
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    asyncio.run(chat(args.url, args.token))


if __name__ == "__main__":
    main()
