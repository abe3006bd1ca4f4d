"""Starts the real `registrar` binary for Python tests, scrapes its /metrics.

Used by tests/prometheus and tests/deploy with Debian's /usr/bin/python3.
Every wait is bounded; nothing sleeps a fixed time except polling a child
process or a file it writes.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def wait_for(what, check, timeout=20.0, interval=0.05):
    """Polls check() until it returns a truthy value; raises after timeout.
    For a real child process (the server starting or going), which tells
    no one: a bounded poll, not a fixed sleep."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # pylint: disable=broad-except
            last_error = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}"
                       + (f" (last error: {last_error})" if last_error else ""))


def terminate(proc, timeout=20):
    """SIGTERM, then waits up to `timeout` s (SIGKILL after that). Returns
    (exit status, whether it stopped by itself)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout), True
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=10), False


class Registrar:
    """One `registrar` process on free loopback ports (port 0 + --port_file)."""

    def __init__(self, binary, args=(), data_dir=None, env=None):
        self.tmp = tempfile.TemporaryDirectory(prefix="registrar-py-")
        self.port_file = os.path.join(self.tmp.name, "ports")
        self.log_path = os.path.join(self.tmp.name, "registrar.log")
        data_dir = data_dir or os.path.join(self.tmp.name, "data")
        argv = [binary, "--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
                f"--port_file={self.port_file}", f"--data_dir={data_dir}",
                "--shutdown_drain=0s", "--durability=none"] + list(args)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log,
                                     env=env)
        ports = wait_for("registrar's port file", self._read_ports)
        self.grpc = ports["grpc"]
        self.metrics = ports["metrics"]

    def _read_ports(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"registrar exited with {self.proc.returncode}:"
                               f"\n{self.log_text()}")
        if not os.path.exists(self.port_file):
            return None
        with open(self.port_file) as f:
            return dict(line.split("=", 1) for line in f.read().split())

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def scrape(self):
        return scrape(self.metrics)

    def stop(self):
        terminate(self.proc)
        self.log.close()
        self.tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def scrape(address, timeout=10):
    with urllib.request.urlopen(f"http://{address}/metrics",
                                timeout=timeout) as r:
        return r.read().decode()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def parse_exposition(text):
    """Prometheus text format → (types {family: type}, samples [(name,
    {label: value}, float)])."""
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            types[name] = kind.strip()
            continue
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError(f"unparsable exposition line: {line!r}")
        labels = {}
        body = m.group(3) or ""
        pos = 0
        while pos < len(body):
            lm = _LABEL.match(body, pos)
            if not lm:
                raise ValueError(f"unparsable labels: {line!r}")
            labels[lm.group(1)] = lm.group(2)
            pos = lm.end()
        samples.append((m.group(1), labels, float(m.group(4))))
    return types, samples


def family_labels(text):
    """{family: set of label names} of an exposition; histogram series
    (_bucket/_sum/_count) count for their family, without `le`."""
    types, samples = parse_exposition(text)
    out = {name: set() for name in types}
    for name, labels, _ in samples:
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[:-len(suffix)]
            if name.endswith(suffix) and types.get(base) in ("histogram",
                                                            "summary"):
                family = base
        out.setdefault(family, set()).update(
            k for k in labels if k not in ("le", "quantile"))
    return types, out


def python_stubs(out_dir):
    """Generates registrar.v1 Python stubs into out_dir (protoc + Debian's
    grpc_python_plugin), puts it on sys.path, returns (pb2, pb2_grpc)."""
    os.makedirs(out_dir, exist_ok=True)
    subprocess.run(
        ["protoc", f"-I{SOURCE_DIR}/proto", "-I/usr/include",
         f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
         "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
         "registrar/v1/registrar.proto"], check=True)
    sys.path.insert(0, out_dir)
    from registrar.v1 import registrar_pb2, registrar_pb2_grpc  # noqa
    return registrar_pb2, registrar_pb2_grpc


def health_stubs(out_dir):
    """grpc.health.v1 stubs from Debian's grpc-proto, as top-level modules
    health_pb2 / health_pb2_grpc (a grpc/ directory would shadow grpcio)."""
    os.makedirs(out_dir, exist_ok=True)
    with open("/usr/share/grpc-proto/grpc/health/v1/health.proto") as f:
        text = f.read()
    with open(os.path.join(out_dir, "health.proto"), "w") as f:
        f.write(text)
    subprocess.run(
        ["protoc", f"-I{out_dir}", f"--python_out={out_dir}",
         f"--grpc_python_out={out_dir}",
         "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
         "health.proto"], check=True, cwd=out_dir)
    sys.path.insert(0, out_dir)
    import health_pb2  # noqa
    import health_pb2_grpc  # noqa
    return health_pb2, health_pb2_grpc
