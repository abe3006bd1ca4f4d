#!/usr/bin/python3
"""The deploy files start the server they describe.

Reads the exact command line, arguments and environment of deploy/Dockerfile
(ENTRYPOINT, CMD, ENV), of every container in deploy/k8s/*.yaml (on top of
the image, as Kubernetes does: `command` replaces the entrypoint, `args` the
CMD, `env` adds to ENV) and of deploy/systemd/registrar.service (ExecStart,
Environment, EnvironmentFile), and runs the built binary with them: paths
the files name (binary, data volume, TLS Secret, credentials directory) are
substituted by temporary ones, nothing else is changed. It runs inside a
private network namespace (`unshare --net`, as root or as a mapped root
user), where the servers listen on 0.0.0.0 as deployed. For each it checks
health (on the API port and on the health-only port), a Registrar call, and
/metrics; and a Registrar call on the health-only port is UNIMPLEMENTED.

Statically, it checks each manifest's probes, ports, volumes, annotations
and Services against the flags the container's command line and environment
give the server.

usage: deploy_test.py REGISTRAR_BINARY
"""

import glob
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pylib"))
from registrar_process import (SOURCE_DIR, health_stubs, python_stubs,  # noqa
                               scrape, terminate, wait_for)

DEPLOY = os.path.join(SOURCE_DIR, "deploy")
IN_NETNS = "REGISTRAR_DEPLOY_TEST_NETNS"
SERVICE = "registrar.v1.Registrar"
CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"

# Container paths of the deploy files → what stands in for them here.
BINARY_PATH = "/usr/local/bin/registrar"
DATA_VOLUME = "/var/lib/registrar"
TLS_DIR = "/etc/registrar/tls"

errors = []


def check(condition, message):
    if not condition:
        errors.append(message)
    return condition


# ---------------------------------------------------------------- parsing


def dockerfile():
    """{entrypoint, cmd, env, expose, volumes, workdir} of the final stage."""
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        text = f.read()
    lines, current = [], ""
    for raw in text.splitlines():
        if not current and (raw.lstrip().startswith("#") or not raw.strip()):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        lines.append(current + raw)
        current = ""
    stage = {}
    for line in lines:
        word, _, rest = line.strip().partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "FROM":
            stage = {"entrypoint": None, "cmd": [], "env": {}, "expose": [],
                     "volumes": [], "workdir": "/"}
        elif word == "ENTRYPOINT":
            stage["entrypoint"] = json.loads(rest)
        elif word == "CMD":
            stage["cmd"] = json.loads(rest)
        elif word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                stage["env"][key] = value
        elif word == "EXPOSE":
            stage["expose"] += [int(p.split("/")[0]) for p in rest.split()]
        elif word == "VOLUME":
            stage["volumes"] += json.loads(rest)
        elif word == "WORKDIR":
            stage["workdir"] = rest
    assert stage.get("entrypoint"), "deploy/Dockerfile has no ENTRYPOINT"
    return stage


def systemd_unit():
    """{argv, env, env_files, workdir, state_dirs} of [Service]."""
    path = os.path.join(DEPLOY, "systemd", "registrar.service")
    section, service = None, []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line
                continue
            if section == "[Service]":
                key, _, value = line.partition("=")
                service.append((key.strip(), value.strip()))
    unit = {"argv": None, "env": {}, "env_files": [], "workdir": None,
            "state_dirs": []}
    for key, value in service:
        if key == "ExecStart":
            unit["argv"] = shlex.split(value.lstrip("-@:+!"))
        elif key == "Environment":
            for pair in shlex.split(value):
                k, _, v = pair.partition("=")
                unit["env"][k] = v
        elif key == "EnvironmentFile":
            unit["env_files"].append(value)
        elif key == "WorkingDirectory":
            unit["workdir"] = value
        elif key == "StateDirectory":
            unit["state_dirs"] += value.split()
    assert unit["argv"], "registrar.service has no ExecStart"
    return unit


def server_flags(argv, env):
    """The server's flags as it will see them: --flag=value on the command
    line wins over REGISTRAR_<FLAG> in the environment (config.cc)."""
    flags = {}
    for key, value in env.items():
        if key.startswith("REGISTRAR_") and key != "REGISTRAR_KEY":
            flags[key[len("REGISTRAR_"):].lower()] = value
    for arg in argv[1:]:
        m = re.match(r"--([a-z_]+)(?:=(.*))?$", arg)
        assert m, f"unexpected argument {arg!r}"
        flags[m.group(1)] = m.group(2) if m.group(2) is not None else "true"
    return flags


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def under(path, directory):
    return os.path.normpath(path).startswith(os.path.normpath(directory)
                                             + os.sep)


# ------------------------------------------------------- manifest checks


def container_port(container, port):
    """A probe's or Service's port (number or name) as a number."""
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container.get("ports", [])
             if p.get("name") == port]
    return named[0] if named else None


def resolve_env(container, image_env, ordinal, secrets):
    """The container's environment: the image's ENV, then `env` (values,
    secretKeyRef from `secrets`, the pod-index label from `ordinal`)."""
    env = dict(image_env)
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
            continue
        source = e.get("valueFrom", {})
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[e["name"]] = secrets[(ref["name"], ref["key"])]
        elif "fieldRef" in source:
            field = source["fieldRef"]["fieldPath"]
            if field == "metadata.labels['apps.kubernetes.io/pod-index']":
                env[e["name"]] = str(ordinal)
            elif field == "metadata.name":
                env[e["name"]] = f"registrar-{ordinal}"
            else:
                raise AssertionError(f"env {e['name']}: field {field} is not "
                                     f"simulated by this test")
        else:
            raise AssertionError(f"env {e['name']}: unsupported valueFrom")
    return env


def check_workload(doc, docs, image, where):
    """Static checks of a StatefulSet/Deployment against its flags."""
    pod = doc["spec"]["template"]
    spec = pod["spec"]
    containers = spec["containers"]
    check(len(containers) == 1, f"{where}: one container expected")
    c = containers[0]
    argv = (c.get("command") or image["entrypoint"]) + (
        c.get("args") if "args" in c else image["cmd"])
    names = {e["name"] for e in c.get("env", [])}
    check("REGISTRAR_NODE_ID" in names or any("node_id" in a for a in argv),
          f"{where}: no node id given")
    for e in c.get("env", []):
        if e["name"] == "REGISTRAR_NODE_ID":
            check("value" not in e,
                  f"{where}: REGISTRAR_NODE_ID is the literal {e.get('value')}"
                  f" for every pod; derive it from the pod ordinal")
    flags = server_flags(argv, resolve_env(c, image["env"], 0, KEYS))
    ports = {p["containerPort"] for p in c.get("ports", [])}
    want = {port_of(flags[f]) for f in ("listen", "health_listen",
                                        "metrics_listen") if f in flags}
    check(ports == want, f"{where}: containerPorts {sorted(ports)} but the "
          f"server listens on {sorted(want)}")
    for name, flag in (("listen", "listen"), ("metrics_listen",
                                               "metrics_listen")):
        check(flags.get(flag, "").startswith("0.0.0.0:"),
              f"{where}: --{name} must listen on 0.0.0.0 in a pod")
    tls = bool(flags.get("tls_cert"))
    # Probes: gRPC health on a port that speaks plaintext.
    probes = [(k, c[k]) for k in ("readinessProbe", "livenessProbe",
                                  "startupProbe") if k in c]
    check(len(probes) >= 2, f"{where}: readiness and liveness probes wanted")
    for kind, probe in probes:
        if not check("grpc" in probe, f"{where}: {kind} is not a gRPC probe"):
            continue
        port = container_port(c, probe["grpc"]["port"])
        plaintext = {port_of(flags["health_listen"])} if "health_listen" in \
            flags else set()
        if not tls:
            plaintext.add(port_of(flags["listen"]))
        check(port in plaintext,
              f"{where}: {kind} probes port {port}, which "
              f"{'is not a plaintext health port' if port in ports else 'nothing listens on'}"
              f" (kubelet gRPC probes cannot speak TLS)")
        check(probe["grpc"].get("service", "") in ("", SERVICE),
              f"{where}: {kind} asks for unknown service "
              f"{probe['grpc'].get('service')}")
    readiness = c.get("readinessProbe", {}).get("grpc", {})
    check(readiness.get("service") == SERVICE,
          f"{where}: readiness should check {SERVICE} (NOT_SERVING while "
          f"the store cannot write)")
    # Metrics annotations.
    annotations = pod["metadata"].get("annotations", {})
    if annotations.get("prometheus.io/scrape") == "true":
        check(int(annotations.get("prometheus.io/port", 0))
              == port_of(flags["metrics_listen"]),
              f"{where}: prometheus.io/port is not --metrics_listen's port")
        check(annotations.get("prometheus.io/path", "/metrics") == "/metrics",
              f"{where}: prometheus.io/path is not /metrics")
    # Volumes: every mount defined; the data dir on a writable claim; TLS
    # files in a mounted Secret that has those keys (kubernetes.io/tls).
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    claims = {t["metadata"]["name"] for t in
              doc["spec"].get("volumeClaimTemplates", [])}
    mounts = c.get("volumeMounts", [])
    for m in mounts:
        check(m["name"] in volumes or m["name"] in claims,
              f"{where}: volumeMount {m['name']} has no volume")
    data_dir = flags.get("data_dir", "./registrar-data")
    data_mounts = [m for m in mounts if under(data_dir, m["mountPath"])]
    check(len(data_mounts) == 1 and data_mounts[0]["name"] in claims
          and not data_mounts[0].get("readOnly"),
          f"{where}: --data_dir={data_dir} is not on a writable volume claim")
    if c.get("securityContext", {}).get("readOnlyRootFilesystem"):
        for flag in ("data_dir", "port_file"):
            if flags.get(flag):
                check(any(under(flags[flag], m["mountPath"])
                          and not m.get("readOnly") for m in mounts),
                      f"{where}: --{flag} is on the read-only root filesystem")
    check(tls, f"{where}: the API port serves plaintext on 0.0.0.0 (no TLS)")
    for flag in ("tls_cert", "tls_key", "tls_client_ca"):
        if not flags.get(flag):
            continue
        mount = [m for m in mounts if under(flags[flag], m["mountPath"])]
        if not check(len(mount) == 1 and mount[0]["name"] in volumes
                     and "secret" in volumes[mount[0]["name"]],
                     f"{where}: --{flag} is not in a mounted Secret"):
            continue
        check(os.path.basename(flags[flag]) in ("tls.crt", "tls.key",
                                                "ca.crt"),
              f"{where}: --{flag} is not a key of a kubernetes.io/tls Secret")
    # Services: the StatefulSet's is headless; target ports exist.
    services = {d["metadata"]["name"]: d for d in docs
                if d.get("kind") == "Service"}
    labels = pod["metadata"].get("labels", {})
    if doc["kind"] == "StatefulSet":
        governing = services.get(doc["spec"].get("serviceName"))
        check(governing is not None and
              governing["spec"].get("clusterIP") == "None",
              f"{where}: serviceName {doc['spec'].get('serviceName')} is not "
              f"a headless Service in {where}")
    for name, svc in services.items():
        selector = svc["spec"].get("selector", {})
        if not selector or any(labels.get(k) != v
                               for k, v in selector.items()):
            continue
        for p in svc["spec"]["ports"]:
            check(container_port(c, p.get("targetPort", p["port"])) in ports,
                  f"{where}: Service {name} port {p['port']} targets "
                  f"{p.get('targetPort')}, which the container does not "
                  f"expose")
    return c


# ------------------------------------------------------------- running


class Stubs:
    def __init__(self, tmp):
        import grpc  # noqa: F401 (imported here: after re-exec)
        self.pb, self.pb_grpc = python_stubs(os.path.join(tmp, "stubs"))
        self.hpb, self.hpb_grpc = health_stubs(os.path.join(tmp, "health"))


def node_of(id_text):
    """The node id bits of a Registrar ID (design.md: 48 ms, 4 version, 12
    sequence, 2 variant, 14 node, 2 key version, 46 tag)."""
    value = 0
    for ch in id_text.split("_", 1)[1]:
        value = value * 32 + CROCKFORD.index(ch)
    return (value >> 48) & 0x3FFF


def run_server(name, argv, env, workdir, stubs, tls_root, expect_node):
    """Runs argv with env (nothing else), checks it, stops it with SIGTERM."""
    import grpc
    flags = server_flags(argv, env)
    listen = flags.get("listen", "127.0.0.1:50051")
    metrics = flags.get("metrics_listen", "127.0.0.1:9464")
    health = flags.get("health_listen")
    tls = bool(flags.get("tls_cert"))
    local = lambda a: "127.0.0.1:" + str(port_of(a))  # noqa: E731
    log_path = os.path.join(workdir, f"{name}.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, env=env, cwd=workdir, stdout=log,
                                stderr=log)
    channels = []

    def log_text():
        with open(log_path, "rb") as f:
            return f.read().decode(errors="replace")[-3000:]

    def channel(address, secure):
        if secure:
            ch = grpc.secure_channel(
                address, grpc.ssl_channel_credentials(root_certificates=tls_root))
        else:
            ch = grpc.insecure_channel(address)
        channels.append(ch)
        return ch

    def serving(ch, service=""):
        if proc.poll() is not None:
            raise RuntimeError(f"{name}: registrar exited with "
                               f"{proc.returncode}:\n{log_text()}")
        stub = stubs.hpb_grpc.HealthStub(ch)
        reply = stub.Check(stubs.hpb.HealthCheckRequest(service=service),
                           timeout=5)
        return reply.status == stubs.hpb.HealthCheckResponse.SERVING

    def accepts(address):
        if proc.poll() is not None:
            raise RuntimeError(f"{name}: registrar exited with "
                               f"{proc.returncode}:\n{log_text()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port_of(address))) == 0

    try:
        # A gRPC channel that found the port closed backs off for seconds:
        # connect only once the server listens.
        for address in [listen, metrics] + ([health] if health else []):
            wait_for(f"{name}: {address} listening",
                     lambda a=address: accepts(a), timeout=30, interval=0.05)
        api = channel(local(listen), tls)
        wait_for(f"{name}: health on {listen}",
                 lambda: serving(api, SERVICE), timeout=30, interval=0.1)
        check(serving(api, ""), f"{name}: server health not SERVING")
        owner = stubs.pb.Owner(tenant="acme", user_id="alice")
        reply = stubs.pb_grpc.RegistrarStub(api).Issue(
            stubs.pb.IssueRequest(kind=stubs.pb.KIND_THREAD, owner=owner,
                                  count=2), timeout=10)
        check(len(reply.ids) == 2, f"{name}: Issue returned {reply.ids}")
        if reply.ids:
            check(node_of(reply.ids[0]) == expect_node,
                  f"{name}: IDs carry node {node_of(reply.ids[0])}, "
                  f"expected {expect_node}")
        if health:
            plain = channel(local(health), False)
            check(serving(plain, SERVICE) and serving(plain, ""),
                  f"{name}: health port {health} not SERVING")
            try:
                stubs.pb_grpc.RegistrarStub(plain).Issue(
                    stubs.pb.IssueRequest(kind=stubs.pb.KIND_THREAD,
                                          owner=owner, count=1), timeout=10)
                check(False, f"{name}: Issue succeeded on the health port")
            except grpc.RpcError as e:
                check(e.code() == grpc.StatusCode.UNIMPLEMENTED,
                      f"{name}: Issue on the health port: {e.code()}, "
                      f"expected UNIMPLEMENTED")
        if tls:
            # The TLS port does not answer plaintext.
            try:
                serving(channel(local(listen), False))
                check(False, f"{name}: {listen} answered plaintext")
            except grpc.RpcError:
                pass
        text = scrape(local(metrics))
        check("registrar_build_info{" in text and
              'grpc_method="Issue"' in text,
              f"{name}: /metrics lacks registrar_build_info or Issue")
        if health:
            # SIGTERM: the health port follows the server's health, so
            # probes see NOT_SERVING while it drains (--shutdown_drain).
            proc.send_signal(signal.SIGTERM)
            wait_for(f"{name}: NOT_SERVING on {health} while draining",
                     lambda: not serving(plain, SERVICE), timeout=10,
                     interval=0.02)
    finally:
        for ch in channels:
            ch.close()
        code, stopped = terminate(proc, timeout=30)
        check(stopped, f"{name}: did not stop within 30 s of SIGTERM")
        check(code == 0, f"{name}: exit status {code} after SIGTERM:\n"
              f"{log_text()}")
    print(f"{name}: started, healthy, answered, stopped")


def substitute(values, mapping):
    out = []
    for v in values:
        for container_path, local_path in mapping.items():
            v = v.replace(container_path, local_path)
        out.append(v)
    return out


def base_env():
    """What a container or a systemd service starts with: no REGISTRAR_*
    leaking in from the test's own environment. The sanitizer builds'
    options (report paths, suppressions) pass through: they belong to the
    binary under test, not to the deployment."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for key in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS",
                "TSAN_OPTIONS"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


KEYS = {}


def main_in_netns(binary):
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="deploy-test-") as tmp:
        stubs = Stubs(tmp)
        tls_dir = os.path.join(tmp, "tls")
        os.makedirs(tls_dir)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-days", "1", "-subj", "/CN=registrar",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", os.path.join(tls_dir, "tls.key"),
             "-out", os.path.join(tls_dir, "tls.crt")],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(tls_dir, "tls.crt"), "rb") as f:
            tls_root = f.read()
        KEYS[("registrar-key", "REGISTRAR_KEY")] = os.urandom(16).hex()

        image = dockerfile()
        # The image alone, as `docker run` starts it.
        flags = server_flags(image["entrypoint"] + image["cmd"], image["env"])
        want = {port_of(flags[f]) for f in ("listen", "health_listen",
                                            "metrics_listen") if f in flags}
        check(set(image["expose"]) == want,
              f"Dockerfile: EXPOSE {sorted(image['expose'])} but the server "
              f"listens on {sorted(want)}")
        check(any(under(flags.get("data_dir", ""), v)
                  for v in image["volumes"]),
              "Dockerfile: --data_dir is not under a VOLUME")

        def container_paths(run):
            volume = os.path.join(tmp, run, "volume")
            os.makedirs(volume)
            return {BINARY_PATH: binary, DATA_VOLUME: volume,
                    TLS_DIR: tls_dir}

        mapping = container_paths("docker")
        env = base_env()
        env.update(dict(zip(image["env"],
                            substitute(image["env"].values(), mapping))))
        run_server("Dockerfile",
                   substitute(image["entrypoint"] + image["cmd"], mapping),
                   env, substitute([image["workdir"]], mapping)[0], stubs,
                   tls_root, expect_node=0)

        manifests = sorted(glob.glob(os.path.join(DEPLOY, "k8s", "*.yaml")))
        check(len(manifests) >= 1, "no manifests in deploy/k8s")
        workloads = 0
        for path in manifests:
            with open(path) as f:
                docs = [d for d in yaml.safe_load_all(f) if d]
            for doc in docs:
                if doc.get("kind") not in ("StatefulSet", "Deployment"):
                    continue
                workloads += 1
                where = f"{os.path.basename(path)} {doc['metadata']['name']}"
                c = check_workload(doc, docs, image, where)
                # Pod ordinal 1: its IDs must carry node 1.
                ordinal = 1
                argv = (c.get("command") or image["entrypoint"]) + (
                    c.get("args") if "args" in c else image["cmd"])
                mapping = container_paths(f"k8s-{workloads}")
                container_env = resolve_env(c, image["env"], ordinal, KEYS)
                env = base_env()
                env.update(dict(zip(container_env, substitute(
                    container_env.values(), mapping))))
                run_server(where, substitute(argv, mapping), env,
                           substitute([c.get("workingDir",
                                             image["workdir"])], mapping)[0],
                           stubs, tls_root, expect_node=ordinal)
        check(workloads >= 1, "no StatefulSet or Deployment in deploy/k8s")

        unit = systemd_unit()
        creds = os.path.join(tmp, "credentials")
        os.makedirs(creds)
        with open(os.path.join(creds, "tag.key"), "w") as f:
            f.write(os.urandom(16).hex() + "\n")
        state = os.path.join(tmp, "systemd", "state")
        os.makedirs(state)
        check(unit["state_dirs"] == ["registrar"],
              "registrar.service: StateDirectory=registrar expected")
        mapping = {BINARY_PATH: binary, DATA_VOLUME: state, "%d": creds}
        env = base_env()
        env.update(dict(zip(unit["env"],
                            substitute(unit["env"].values(), mapping))))
        for env_file in unit["env_files"]:
            optional = env_file.startswith("-")
            check(optional, f"registrar.service: EnvironmentFile={env_file} "
                  f"must be optional ('-')")
        # systemd's own check of the unit (the binary path substituted).
        unit_copy = os.path.join(tmp, "registrar.service")
        with open(os.path.join(DEPLOY, "systemd", "registrar.service")) as f:
            unit_text = f.read()
        with open(unit_copy, "w") as f:
            f.write(unit_text.replace(BINARY_PATH, binary))
        verify = subprocess.run(["systemd-analyze", "verify", unit_copy],
                                capture_output=True, text=True, timeout=60)
        check(verify.returncode == 0 and not verify.stderr.strip(),
              f"systemd-analyze verify registrar.service: "
              f"{verify.stdout}{verify.stderr}")
        flags = server_flags(unit["argv"], unit["env"])
        check(under(flags.get("data_dir", ""), DATA_VOLUME),
              "registrar.service: --data_dir is not in its StateDirectory")
        run_server("registrar.service", substitute(unit["argv"], mapping),
                   env, substitute([unit["workdir"] or "/"], mapping)[0],
                   stubs, tls_root=None,
                   expect_node=int(flags.get("node_id", 0)))
    if errors:
        print("\n".join(errors))
        return 1
    print("deploy files: all checks passed")
    return 0


def main():
    binary = os.path.abspath(sys.argv[1])
    if os.environ.get(IN_NETNS) == "1":
        return main_in_netns(binary)
    unshare = ["unshare", "--net"]
    if os.geteuid() != 0:
        unshare = ["unshare", "--user", "--map-root-user", "--net"]
    env = dict(os.environ)
    env[IN_NETNS] = "1"
    return subprocess.run(unshare + [sys.executable, os.path.abspath(__file__),
                                     binary], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
