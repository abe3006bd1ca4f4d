#!/usr/bin/python3
"""scripts/cluster.sh runs a working cluster, as a developer uses it.

`cluster.sh start DIR` (3 etcd members, 3 registrar replicas on loopback)
must print a --target= line of the 3 replicas; through it registrarctl
issues an ID and validates it VALID. Then the replica of the target's first
endpoint (the one registrarctl tries first) is killed with SIGKILL: a
Validate through the same target still answers VALID at once, and an Issue
succeeds once the others have a writer (at once if the killed one was a
follower; after the node-id TTL if it was the writer: the test sets
REGISTRAR_ETCD_NODE_TTL=3s, which the script passes on, to keep that short).
`status` shows the killed replica down. `stop` must leave none of the
processes it started (their pids, and any process naming DIR).

usage: cluster_sh_test.py BUILD_DIR
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pylib"))
from registrar_process import SOURCE_DIR, wait_for  # noqa: E402

SCRIPT = os.path.join(SOURCE_DIR, "scripts", "cluster.sh")
OWNER = ["--tenant=acme", "--user=cluster-sh"]


def running(pid):
    """Whether pid runs (a zombie waiting for its reaper does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def processes_naming(text):
    """Pids of running processes whose command line contains text."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(
                    errors="replace")
        except OSError:
            continue
        if text in cmdline and running(int(entry)):
            out.append(int(entry))
    return out


def main():
    build = os.path.abspath(sys.argv[1])
    ctl = os.path.join(build, "tools", "registrarctl", "registrarctl")
    tmp = tempfile.mkdtemp(prefix="cluster-sh-test-")
    cluster_dir = os.path.join(tmp, "cluster")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REGISTRAR_", "ETCD"))}
    env["REGISTRAR_ETCD_NODE_TTL"] = "3s"
    failures = []
    started = time.monotonic()

    def script(*args, timeout=150):
        result = subprocess.run(["bash", SCRIPT, f"--build={build}", *args,
                                 cluster_dir], env=env, capture_output=True,
                                text=True, timeout=timeout)
        return result.returncode, result.stdout + result.stderr

    def ctl_run(target, *args):
        result = subprocess.run([ctl, f"--target={target}", *args], env=env,
                                capture_output=True, text=True, timeout=60)
        return result.returncode, result.stdout.strip(), result.stderr.strip()

    def pids():
        run = os.path.join(cluster_dir, "run")
        out = {}
        for name in sorted(os.listdir(run)) if os.path.isdir(run) else []:
            with open(os.path.join(run, name)) as f:
                out[name[:-len(".pid")]] = int(f.read().strip())
        return out

    all_pids = {}
    try:
        code, out = script("start")
        print(out)
        if code != 0:
            raise AssertionError(f"cluster.sh start exited {code}")
        all_pids = pids()
        if sorted(all_pids) != ["etcd0", "etcd1", "etcd2", "replica0",
                                "replica1", "replica2"]:
            raise AssertionError(f"pid files: {sorted(all_pids)}")
        for name, pid in all_pids.items():
            if not running(pid):
                raise AssertionError(f"{name} (pid {pid}) is not running")
        m = re.search(r"^--target=(\S+)$", out, re.M)
        if not m:
            raise AssertionError("start printed no --target= line")
        target = m.group(1)
        endpoints = target.split(",")
        if len(endpoints) != 3:
            raise AssertionError(f"--target={target}: 3 endpoints expected")
        writers = re.findall(r"^\s+(replica\d)\s.*\swriter$", out, re.M)
        if len(writers) != 1:
            raise AssertionError(f"start named writers {writers}")

        code, out = script("status", timeout=60)
        print(out)
        if code != 0 or len(re.findall(r"^\S+\s+up\s", out, re.M)) != 6:
            failures.append(f"status after start (exit {code}): not all 6 up")

        code, issued, err = ctl_run(target, "issue", "--kind=thread", *OWNER)
        if code != 0 or not issued.startswith("thread_"):
            raise AssertionError(f"issue through {target}: {code} {err}")
        code, verdict, err = ctl_run(target, "validate", *OWNER, issued)
        if code != 0 or verdict.split() != [issued, "VALID"]:
            failures.append(f"validate {issued}: {code} {verdict!r} {err}")

        # The replica registrarctl tries first: which one listens there.
        first = None
        for i in range(3):
            ports = os.path.join(cluster_dir, f"replica{i}", "ports")
            with open(ports) as f:
                if f"grpc={endpoints[0]}" in f.read().split():
                    first = f"replica{i}"
        if first is None:
            raise AssertionError(f"no replica listens on {endpoints[0]}")
        victim = all_pids[first]
        print(f"SIGKILL to {first} (pid {victim}, "
              f"{'the writer' if first in writers else 'a follower'})")
        os.kill(victim, signal.SIGKILL)
        wait_for(f"{first} gone", lambda: not running(victim), timeout=10,
                 interval=0.02)

        t0 = time.monotonic()
        code, verdict, err = ctl_run(target, "validate", *OWNER, issued)
        if code != 0 or verdict.split() != [issued, "VALID"]:
            failures.append(f"validate after SIGKILL of {first}: {code} "
                            f"{verdict!r} {err}")
        print(f"validate after SIGKILL: {time.monotonic() - t0:.2f} s")

        # An Issue: at once with a follower gone; after the takeover (node
        # TTL 3 s, margin) with the writer gone. Each attempt is a real call.
        t0 = time.monotonic()
        last = []

        def issue_again():
            code, ids, err = ctl_run(target, "issue", "--kind=thread", *OWNER)
            last[:] = [code, ids, err]
            return code == 0 and ids.startswith("thread_") and ids
        try:
            second = wait_for("an Issue through the others",
                              issue_again, timeout=30, interval=0.2)
            print(f"issue after SIGKILL: {time.monotonic() - t0:.2f} s")
            code, verdict, err = ctl_run(target, "validate", *OWNER, issued,
                                         second)
            if code != 0 or verdict.split() != [issued, "VALID", second,
                                                 "VALID"]:
                failures.append(f"validate after the takeover: {code} "
                                f"{verdict!r} {err}")
        except TimeoutError as e:
            failures.append(f"{e}: last {last}")

        code, out = script("status", timeout=60)
        print(out)
        if code == 0 or not re.search(rf"^{first}\s+down\s", out, re.M):
            failures.append(f"status does not show {first} down (exit {code})")

        code, out = script("stop", timeout=120)
        print(out)
        if code != 0:
            failures.append(f"cluster.sh stop exited {code}")
        left = [f"{n} (pid {p})" for n, p in all_pids.items() if running(p)]
        left += [f"pid {p}" for p in processes_naming(cluster_dir + "/")
                 if p not in all_pids.values()]
        if left:
            failures.append(f"still running after stop: {', '.join(left)}")
        if pids():
            failures.append(f"pid files left after stop: {sorted(pids())}")
    except (AssertionError, subprocess.TimeoutExpired, TimeoutError) as e:
        failures.append(str(e))
    finally:
        if failures:
            logs = os.path.join(cluster_dir, "logs")
            names = sorted(os.listdir(logs)) if os.path.isdir(logs) else []
            for name in names:
                with open(os.path.join(logs, name), errors="replace") as f:
                    print(f"--- {name} (last lines)\n" +
                          "".join(f.readlines()[-15:]))
        # Whatever a failure left behind goes, by the pids the script wrote.
        for pid in list(all_pids.values()) + processes_naming(cluster_dir):
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"took {time.monotonic() - started:.1f} s")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("cluster.sh: start, calls through the target, SIGKILL of a "
          "replica, status, stop: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
