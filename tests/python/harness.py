"""Test harness: the real registrar binary on a free port, condition waits,
and the sanitizer time scale (tests/integration/test_util.h's rule)."""

from __future__ import annotations

import asyncio
import functools
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable, List, Optional

REGISTRAR_BINARY = os.environ.get("REGISTRAR_BINARY", "")
SOURCE_DIR = pathlib.Path(
    os.environ.get("REGISTRAR_SOURCE_DIR",
                   pathlib.Path(__file__).resolve().parents[2]))
PYTHON = os.environ.get("REGISTRAR_PYTHON", "/usr/bin/python3")


def time_scale() -> int:
    """How many times longer a timing bound may be in this build: the
    sanitizer presets export REGISTRAR_SANITIZER (asan: 2, tsan: 4). Scales
    deadlines and waits, never what a test checks."""
    sanitizer = os.environ.get("REGISTRAR_SANITIZER", "")
    if not sanitizer:
        return 1
    return 4 if sanitizer == "tsan" else 2


def wait_until(condition: Callable[[], object], timeout: float,
               what: str, interval: float = 0.02):
    """Polls `condition` until it returns a true value (returned) or
    `timeout` seconds (scaled) pass (AssertionError naming `what`). For
    conditions of a real child process (the server, the gateway), which
    tells no one: a bounded poll, not a fixed sleep."""
    deadline = time.monotonic() + timeout * time_scale()
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


async def async_wait_until(condition, timeout: float, what: str,
                           interval: float = 0.05):
    """wait_until for a coroutine function `condition`."""
    deadline = time.monotonic() + timeout * time_scale()
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def run_async(test):
    """Runs an async test function in a fresh event loop (pytest-asyncio is
    not packaged in Debian 12)."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        asyncio.run(test(*args, **kwargs))

    return wrapper


class ServerProcess:
    """The real registrar binary with its own data dir, on 127.0.0.1."""

    def __init__(self, args: Optional[List[str]] = None,
                 store: str = "memory") -> None:
        if not REGISTRAR_BINARY or not os.access(REGISTRAR_BINARY, os.X_OK):
            raise RuntimeError("REGISTRAR_BINARY must name the built "
                               f"registrar binary (got {REGISTRAR_BINARY!r})")
        self.dir = tempfile.mkdtemp(prefix="registrar-pytest-")
        self.args = list(args or [])
        self.store = store
        self.proc: Optional[subprocess.Popen] = None
        self.address = ""
        self.port = 0
        self._log = None

    def start(self, port: int = 0) -> "ServerProcess":
        """Starts the server (on `port`, or a free one) and waits until it
        serves; a restart on the same port passes self.port."""
        port_file = os.path.join(self.dir, "ports")
        if os.path.exists(port_file):
            os.unlink(port_file)
        self._log = open(os.path.join(self.dir, "server.log"), "ab")
        self.proc = subprocess.Popen(
            [REGISTRAR_BINARY, f"--listen=127.0.0.1:{port}",
             "--metrics_listen=127.0.0.1:0", f"--port_file={port_file}",
             "--shutdown_drain=0s", f"--store={self.store}",
             f"--data_dir={os.path.join(self.dir, 'data')}", *self.args],
            stdout=self._log, stderr=subprocess.STDOUT)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"registrar exited with "
                                     f"{self.proc.returncode}:\n{self.log()}")
            try:
                with open(port_file) as f:
                    lines = dict(line.split("=", 1)
                                 for line in f.read().split())
            except (OSError, ValueError):
                return None
            return lines.get("grpc")

        self.address = wait_until(ready, 30, "registrar to serve")
        self.port = int(self.address.rsplit(":", 1)[1])
        return self

    def log(self) -> str:
        try:
            with open(os.path.join(self.dir, "server.log"), "rb") as f:
                return f.read()[-4000:].decode(errors="replace")
        except OSError:
            return ""

    def send_signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Sends `sig` and waits (bounded) for the process to exit."""
        if self.proc is None:
            return 0
        self.send_signal(sig)
        try:
            code = self.proc.wait(timeout=20 * time_scale())
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self._log:
            self._log.close()
        return code

    def close(self) -> None:
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


def gateway_command(*args: str) -> List[str]:
    return [PYTHON, str(SOURCE_DIR / "examples/gateway/gateway.py"), *args]


if __name__ == "__main__":
    sys.exit("harness.py is imported by the tests")
