#!/usr/bin/python3
"""Debian's real Prometheus scraping a real registrar under load evaluates
every Grafana panel expression and every recording and alerting rule
expression of deploy/ through its HTTP API (/api/v1/query): each parses and
returns at least one series.

Alerts have no series while nothing is wrong, so for an alert each operand
of its comparisons (and of `and`/`or`/`unless`) is evaluated instead, e.g.
`up{job="registrar"}` of `up{job="registrar"} == 0`; the whole expression
must still parse. The scrape config is deploy/prometheus/prometheus.yml with
its targets replaced by the test server and 1 s intervals.

usage: prometheus_e2e_test.py REGISTRAR_BINARY
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pylib"))
from registrar_process import (SOURCE_DIR, Registrar, python_stubs,  # noqa
                               terminate, wait_for)

import grpc  # noqa: E402

DEPLOY = os.path.join(SOURCE_DIR, "deploy")
PROMETHEUS = "/usr/bin/prometheus"
COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
SET_OPS = ("and", "or", "unless")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def split_top_level(expr):
    """Operands of the top-level comparison and set operators of a PromQL
    expression (outside (), [], {} and strings)."""
    parts, depth, quote, start, i = [], 0, None, 0, 0
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            op = next((o for o in COMPARISONS if expr.startswith(o, i)), None)
            word = next((w for w in SET_OPS
                         if expr.startswith(w, i)
                         and (i == 0 or not expr[i - 1].isalnum())
                         and not expr[i + len(w):i + len(w) + 1].isalnum()
                         and not expr[i + len(w):i + len(w) + 1] in "_:"),
                        None)
            token = op or word
            if token:
                parts.append(expr[start:i])
                i += len(token)
                start = i
                continue
        i += 1
    parts.append(expr[start:])
    return [p.strip() for p in parts if p.strip()]


def is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def expressions():
    """(where, expression, must_have_series) of every dashboard panel and
    rule; alert expressions are checked to parse, their operands to have
    series."""
    out = []
    with open(os.path.join(DEPLOY, "grafana", "registrar.json")) as f:
        dashboard = json.load(f)
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 20, f"only {len(panels)} dashboard panels"
    for p in panels:
        assert p.get("targets"), f"panel {p['title']!r} has no targets"
        for t in p["targets"]:
            expr = (t["expr"].replace("$__rate_interval", "1m")
                    .replace("$instance", ".*"))
            out.append((f"panel {p['title']!r}", expr, True))
    for name in ("registrar-rules.yml", "registrar-alerts.yml"):
        with open(os.path.join(DEPLOY, "prometheus", name)) as f:
            groups = yaml.safe_load(f)["groups"]
        for g in groups:
            for r in g["rules"]:
                expr = " ".join(r["expr"].split())
                if "record" in r:
                    out.append((f"record {r['record']}", expr, True))
                    continue
                out.append((f"alert {r['alert']}", expr, False))
                operands = [o for o in split_top_level(expr)
                            if not is_number(o)]
                assert operands, f"alert {r['alert']}: no operands"
                for o in operands:
                    # `5 * x`: the series come from x.
                    out.append((f"alert {r['alert']} operand", o, True))
    return out


class Prometheus:
    def __init__(self, metrics_address, tmp):
        with open(os.path.join(DEPLOY, "prometheus", "prometheus.yml")) as f:
            config = yaml.safe_load(f)
        config["global"].update(scrape_interval="1s", scrape_timeout="1s",
                                evaluation_interval="1s")
        config["rule_files"] = [os.path.join(DEPLOY, "prometheus", r)
                                for r in config["rule_files"]]
        jobs = [j for j in config["scrape_configs"]
                if j["job_name"] == "registrar"]
        assert len(jobs) == 1, "prometheus.yml needs one job 'registrar'"
        jobs[0]["static_configs"] = [{"targets": [metrics_address]}]
        jobs[0].pop("file_sd_configs", None)
        path = os.path.join(tmp, "prometheus.yml")
        with open(path, "w") as f:
            yaml.safe_dump(config, f)
        self.address = f"127.0.0.1:{free_port()}"
        self.log = open(os.path.join(tmp, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={path}",
             f"--storage.tsdb.path={os.path.join(tmp, 'tsdb')}",
             f"--web.listen-address={self.address}"],
            stdout=self.log, stderr=self.log)

    def query(self, expr):
        if self.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited: {self.proc.returncode}")
        url = (f"http://{self.address}/api/v1/query?"
               + urllib.parse.urlencode({"query": expr}))
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            body = json.load(e)
        return body

    def series(self, expr):
        body = self.query(expr)
        if body.get("status") != "success":
            raise ValueError(f"{expr}: {body.get('error')}")
        return body["data"]["result"]

    def stop(self):
        terminate(self.proc)
        self.log.close()


def load(channel, pb, pb_grpc, stop):
    """Issue, OpenContext, Validate, Cleanup, Describe of unknown IDs
    (NotFound), leases left to expire, and a Watch stream."""
    stub = pb_grpc.RegistrarStub(channel)
    owner = pb.Owner(tenant="acme", user_id="alice")
    watch = stub.Watch(pb.WatchRequest(start_revision=0))
    events = []

    def read():
        try:
            for e in watch:
                events.append(e)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:  # by watch.cancel()
                raise

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while not stop.is_set():
        ids = stub.Issue(pb.IssueRequest(kind=pb.KIND_THREAD, owner=owner,
                                         count=3)).ids
        stub.OpenContext(pb.OpenContextRequest(owner=owner,
                                               thread_id=ids[0]))
        stub.Validate(pb.ValidateRequest(
            owner=owner, items=[pb.ValidateItem(id=i) for i in ids]
            + [pb.ValidateItem(id="nonsense")]))
        stub.Cleanup(pb.CleanupRequest(owner=owner,
                                       ids=pb.IdList(ids=ids[1:])))
        try:
            stub.Describe(pb.DescribeRequest(
                id="thread_01jf8x2k3m4n5p6q7r8s9t0v1w"))
        except grpc.RpcError:
            pass
        stub.GrantLease(pb.GrantLeaseRequest(holder="gw-1", ttl_seconds=1))
        stop.wait(0.05)
    watch.cancel()
    reader.join(timeout=10)
    return events


def main():
    binary = sys.argv[1]
    exprs = expressions()
    with tempfile.TemporaryDirectory(prefix="prom-e2e-") as tmp, \
            Registrar(binary, ["--store=rocksdb"]) as server:
        pb, pb_grpc = python_stubs(os.path.join(tmp, "stubs"))
        channel = grpc.insecure_channel(server.grpc)
        stop = threading.Event()
        result = {}
        worker = threading.Thread(
            target=lambda: result.update(
                events=load(channel, pb, pb_grpc, stop)))
        worker.start()
        prom = Prometheus(server.metrics, tmp)
        try:
            # Scraped, rates computable (two samples), rules evaluated, and
            # the load's leases expired.
            for what in ('up{job="registrar"} == 1',
                         'rate(grpc_server_handled_total{grpc_method="Issue",'
                         'grpc_code="OK"}[1m]) > 0',
                         'grpc_method:grpc_server_handled:rate5m'
                         '{grpc_method="Issue"} > 0',
                         'rate(registrar_leases_ended_total'
                         '{reason="lease_expired"}[1m]) > 0',
                         'job:registrar_leases_expired:rate1h > 0',
                         'rate(grpc_server_msg_sent_total'
                         '{grpc_method="Watch"}[1m]) > 0'):
                wait_for(what, lambda w=what: prom.series(w), timeout=60,
                         interval=0.25)
            failures = []
            for where, expr, need_series in exprs:
                try:
                    series = prom.series(expr)
                except ValueError as e:
                    failures.append(f"{where}: does not evaluate: {e}")
                    continue
                if need_series and not series:
                    failures.append(f"{where}: no series: {expr}")
        finally:
            stop.set()
            worker.join(timeout=30)
            prom.stop()
            channel.close()
        events = result.get("events")
        assert events, "the load's Watch stream received no events"
    if failures:
        print("\n".join(failures))
        print(f"{len(failures)} of {len(exprs)} expressions failed")
        return 1
    print(f"all {len(exprs)} dashboard and rule expressions evaluate with "
          f"series")
    return 0


if __name__ == "__main__":
    sys.exit(main())
