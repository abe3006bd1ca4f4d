#!/usr/bin/python3
"""Every `registrarctl` example of the README runs as written.

Takes the ```sh block of the README's "### registrarctl" section and runs
each line, in order, with bash, against a real `registrar` on a free
loopback port (REGISTRAR_TARGET, which registrarctl reads when --target is
not given). The only changes to a line:
  - `registrarctl` is the built binary;
  - the placeholders (THREAD_ID, LEASE_ID, ...) are the IDs the earlier
    lines printed, as a reader would paste them;
  - the paths a reader would have (./registrar-data: the server's data dir,
    /etc/registrar/tag.key, token.txt) are in a temporary directory.
Each line must exit 0 within a bound (so `watch` must return by itself) and
print what the README's usage says. A placeholder the test does not know
fails it: a new example needs its value here.

usage: readme_registrarctl_test.py REGISTRAR REGISTRARCTL README
"""

import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pylib"))
from registrar_process import Registrar  # noqa: E402

PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_]*_ID\b")
ID = re.compile(r"^[0-9a-z]+_[0-9a-z]+$")


def readme_examples(readme):
    with open(readme) as f:
        text = f.read()
    section = text.split("\n### registrarctl\n", 1)
    if len(section) != 2:
        raise AssertionError("README has no '### registrarctl' section")
    block = re.search(r"```sh\n(.*?)```", section[1], re.S)
    if block is None:
        raise AssertionError("no ```sh block in the registrarctl section")
    lines = [l for l in block.group(1).splitlines() if l.strip()]
    if not lines or not all(l.startswith("registrarctl ") for l in lines):
        raise AssertionError(f"unexpected example lines: {lines}")
    return lines


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    registrar, registrarctl, readme = sys.argv[1:]
    examples = readme_examples(readme)
    values = {}
    with tempfile.TemporaryDirectory(prefix="readme-ctl-") as tmp, \
            Registrar(registrar) as server:
        data_dir = os.path.join(tmp, "data-link")
        os.symlink(os.path.join(server.tmp.name, "data"), data_dir)
        with open(os.path.join(tmp, "token.txt"), "w") as f:
            f.write("a-token-of-a-gateway\n")
        env = dict(os.environ, REGISTRAR_TARGET=server.grpc)
        env.pop("REGISTRAR_TOKEN", None)
        for line in examples:
            command = line.split("  #", 1)[0].strip()
            unknown = set(PLACEHOLDER.findall(command)) - set(values)
            if unknown:
                fail(f"{line!r}: no value for {sorted(unknown)} (the test "
                     f"knows {sorted(values)})")
            command = PLACEHOLDER.sub(lambda m: values[m.group(0)], command)
            command = (command.replace("./registrar-data", data_dir)
                       .replace("/etc/registrar/", tmp + "/"))
            command = registrarctl + command[len("registrarctl"):]
            try:
                run = subprocess.run(["bash", "-c", command], cwd=tmp, env=env,
                                     capture_output=True, text=True,
                                     timeout=30)
            except subprocess.TimeoutExpired:
                fail(f"{line!r} did not return within 30 s")
            if run.returncode != 0:
                fail(f"{line!r} exited with {run.returncode}:\n{run.stderr}")
            out = run.stdout.split()
            print(f"ok: {line}\n    {run.stdout.strip()[:200]}")

            # What each line printed, and the IDs later lines use.
            if " issue --kind=thread" in line:
                if len(out) != 2 or not all(ID.match(i) for i in out):
                    fail(f"{line!r} printed {run.stdout!r}, not 2 IDs")
                values["THREAD_ID"], values["OTHER_ID"] = out
            elif " lease grant" in line:
                values["LEASE_ID"] = out[0]
                if out[1:] != ["30"]:
                    fail(f"{line!r} printed {run.stdout!r}")
            elif " issue --kind=connection" in line:
                if len(out) != 1 or not ID.match(out[0]):
                    fail(f"{line!r} printed {run.stdout!r}")
                values["CONN_ID"] = out[0]
            elif " open " in line:
                if len(out) != 4:
                    fail(f"{line!r} printed {run.stdout!r}")
                values["RUN_ID"] = out[1]
                if "--thread=" in line and out[0] != values["THREAD_ID"]:
                    fail(f"{line!r} did not reuse the thread: {run.stdout!r}")
            elif " validate " in line:
                verdicts = dict(l.split("\t")[:2]
                                for l in run.stdout.splitlines())
                if verdicts.get(values["RUN_ID"], "").upper() != "VALID":
                    fail(f"{line!r}: the run is not VALID: {run.stdout!r}")
                if verdicts.get(values["OTHER_ID"], "VALID").upper() == "VALID":
                    fail(f"{line!r}: a thread ID passed as a run: "
                         f"{run.stdout!r}")
            elif " leases " in line:
                if values["LEASE_ID"] not in run.stdout:
                    fail(f"{line!r} did not list {values['LEASE_ID']}: "
                         f"{run.stdout!r}")
            elif " revoke-holder " in line:
                if not run.stdout.startswith("revoked: 1\n"):
                    fail(f"{line!r} printed {run.stdout!r}")
            elif " describe " in line:
                if values["THREAD_ID"] not in run.stdout:
                    fail(f"{line!r} printed {run.stdout!r}")
            elif " watch " in line:
                if len(run.stdout.splitlines()) < 5:
                    fail(f"{line!r} printed too few events: {run.stdout!r}")
            elif " hash-token" in line:
                if len(out) != 1 or not re.fullmatch(r"[0-9a-f]{64}", out[0]):
                    fail(f"{line!r} printed {run.stdout!r}")
        for path in ("tag.key",):
            if not os.path.exists(os.path.join(tmp, path)):
                fail(f"keygen wrote no {path}")
    print(f"all {len(examples)} registrarctl examples ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
