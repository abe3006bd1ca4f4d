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

A manifest of replicas with --store=etcd (registrar-cluster.yaml) runs
three replicas of its Deployment, each in a network namespace of its own
with a pod IP on a bridge (as on a node: every pod binds 0.0.0.0:50051),
against the manifest's own etcd StatefulSet: its members run in the test's
namespace with their pods' arguments, their ports mapped to free ones and
their stable names to the bridge's address, and the replicas get those as
their etcd endpoints, and their pod IPs; nothing else is substituted. They
must elect one writer, named by all at its pod IP, and serve reads of its
IDs (run_pods_with_etcd). Where the kernel has no bridge or veth, one
replica runs in the test's namespace with 127.0.0.1 as its pod IP. $(VAR)
references and the downward API (metadata.name, metadata.namespace,
status.podIP, the pod-index label) are expanded as Kubernetes does.

Statically, it checks each manifest's probes, ports, volumes, annotations
and Services against the flags the container's command line and environment
give the server; for --store=etcd also no node id, the advertise address
from the pod IP, a headless Service for dns:/// targets, and the etcd
StatefulSet: --etcd_endpoints naming its members' stable names on the
client port, --initial-cluster by those names, the limits equal to the
replicas' and README "etcd settings", probes, volume claim, Services.

usage: deploy_test.py REGISTRAR_BINARY [--static_etcd]
  --static_etcd   check, but do not run, the --store=etcd manifests (TSan:
                  the etcd client is not run under TSan, see tests/cluster)
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
import urllib.request

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


# A pod's downward-API fields as this test simulates them.
POD_INDEX = "metadata.labels['apps.kubernetes.io/pod-index']"
NAMESPACE = "registrar-test"


def pod_fields(name, ordinal=0, pod_ip="127.0.0.1"):
    return {"metadata.name": name, "metadata.namespace": NAMESPACE,
            POD_INDEX: str(ordinal), "status.podIP": pod_ip}


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(text, defined):
    """Kubernetes' $(VAR) expansion in env values, command and args: a
    variable defined (earlier) in the container's env, else left as is;
    $$ is a literal $."""
    return _REF.sub(lambda m: "$" if m.group(0) == "$$" else
                    defined.get(m.group(1), m.group(0)), text)


def resolve_env(container, image_env, fields, secrets):
    """The container's environment: the image's ENV, then `env` (values
    with $(VAR) expanded, secretKeyRef from `secrets`, fieldRef from the
    simulated pod `fields`)."""
    env, defined = dict(image_env), {}
    for e in container.get("env", []):
        if "value" in e:
            value = expand(str(e["value"]), defined)
        else:
            source = e.get("valueFrom", {})
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                value = secrets[(ref["name"], ref["key"])]
            elif "fieldRef" in source:
                field = source["fieldRef"]["fieldPath"]
                if field not in fields:
                    raise AssertionError(f"env {e['name']}: field {field} is "
                                         f"not simulated by this test")
                value = fields[field]
            else:
                raise AssertionError(f"env {e['name']}: unsupported valueFrom")
        env[e["name"]] = defined[e["name"]] = value
    return env


def container_argv(container, image, env):
    """command + args as Kubernetes runs them (on top of the image's
    ENTRYPOINT and CMD), $(VAR) expanded from the container's env."""
    argv = (container.get("command") or image["entrypoint"]) + (
        container.get("args") if "args" in container else image["cmd"])
    names = {e["name"] for e in container.get("env", [])}
    defined = {k: v for k, v in env.items() if k in names}
    return [expand(str(a), defined) for a in argv]


def check_workload(doc, docs, image, where):
    """Static checks of a StatefulSet/Deployment against its flags."""
    pod = doc["spec"]["template"]
    spec = pod["spec"]
    containers = spec["containers"]
    check(len(containers) == 1, f"{where}: one container expected")
    c = containers[0]
    env = resolve_env(c, image["env"],
                      pod_fields(f"{doc['metadata']['name']}-0"), KEYS)
    argv = container_argv(c, image, env)
    flags = server_flags(argv, env)
    names = {e["name"] for e in c.get("env", [])}
    node_id_given = "REGISTRAR_NODE_ID" in names or any(
        "node_id" in a for a in argv)
    if flags.get("store") == "etcd":
        # Replicas claim their node ids in etcd (--node_id is refused).
        check(not node_id_given, f"{where}: a node id is given, but "
              f"--store=etcd refuses --node_id")
        check_replica_env(c, flags, where)
        if flags.get("tls_cert"):
            # A follower forwards changes to the writer's pod IP, which a
            # certificate shared by all pods does not name: it must check
            # the certificate against a name it does carry (a Service of
            # this file) and the CA of the mounted Secret.
            services = [d["metadata"]["name"] for d in docs
                        if d.get("kind") == "Service"]
            name = flags.get("cluster_tls_server_name", "")
            check(name in [f"{s}.{NAMESPACE}.svc" for s in services],
                  f"{where}: --cluster_tls_server_name={name!r} is not a "
                  f"Service of this file (<name>.<namespace>.svc): "
                  f"forwarding to the writer's pod IP fails over TLS")
            check(flags.get("cluster_tls_ca"), f"{where}: no "
                  f"--cluster_tls_ca: forwarding checks the writer "
                  f"against the system's roots")
    else:
        check(node_id_given, f"{where}: no node id given")
    for e in c.get("env", []):
        if e["name"] == "REGISTRAR_NODE_ID":
            check("value" not in e,
                  f"{where}: REGISTRAR_NODE_ID is the literal {e.get('value')}"
                  f" for every pod; derive it from the pod ordinal")
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
    if flags.get("store", "rocksdb") == "rocksdb":
        data_dir = flags.get("data_dir", "./registrar-data")
        data_mounts = [m for m in mounts if under(data_dir, m["mountPath"])]
        check(len(data_mounts) == 1 and data_mounts[0]["name"] in claims
              and not data_mounts[0].get("readOnly"),
              f"{where}: --data_dir={data_dir} is not on a writable volume "
              f"claim")
    else:
        # Stateless: nothing of the replica's lives on the pod.
        check(doc["kind"] == "Deployment" and not claims,
              f"{where}: --store={flags['store']} keeps nothing locally; a "
              f"Deployment without volume claims expected")
    if c.get("securityContext", {}).get("readOnlyRootFilesystem"):
        flags_written = ("port_file",) if flags.get("store") == "etcd" else (
            "data_dir", "port_file")
        for flag in flags_written:
            if flags.get(flag):
                check(any(under(flags[flag], m["mountPath"])
                          and not m.get("readOnly") for m in mounts),
                      f"{where}: --{flag} is on the read-only root filesystem")
    check(tls, f"{where}: the API port serves plaintext on 0.0.0.0 (no TLS)")
    for flag in ("tls_cert", "tls_key", "tls_client_ca", "cluster_tls_ca"):
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
    if flags.get("store") == "etcd":
        # Clients dial dns:///<headless Service>:<port>: one address per
        # ready replica, round robin in the client.
        headless = [n for n, svc in services.items()
                    if svc["spec"].get("clusterIP") == "None"
                    and svc["spec"].get("selector")
                    and all(labels.get(k) == v for k, v in
                            svc["spec"]["selector"].items())
                    and any(container_port(c, p.get("targetPort", p["port"]))
                            == port_of(flags["listen"])
                            for p in svc["spec"]["ports"])]
        check(headless, f"{where}: no headless Service (clusterIP: None) "
              f"selects the replicas on the API port, for dns:/// targets")
        check_etcd(docs, flags, where)
    return c


def check_replica_env(c, flags, where):
    """--store=etcd in a pod: the advertise address is the pod IP (downward
    API) and the API port, so the other replicas reach this one."""
    env = {e["name"]: e for e in c.get("env", [])}
    advertise = env.get("REGISTRAR_ADVERTISE_ADDRESS", {}).get("value", "")
    m = re.fullmatch(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\):(\d+)", advertise)
    if not check(m, f"{where}: REGISTRAR_ADVERTISE_ADDRESS={advertise!r} is "
                 f"not $(POD_IP_VARIABLE):PORT"):
        return
    source = env.get(m.group(1), {}).get("valueFrom", {}).get("fieldRef", {})
    check(source.get("fieldPath") == "status.podIP",
          f"{where}: {m.group(1)} is not the pod IP (fieldRef status.podIP)")
    check(names_before(c, m.group(1), "REGISTRAR_ADVERTISE_ADDRESS"),
          f"{where}: {m.group(1)} must be defined before "
          f"REGISTRAR_ADVERTISE_ADDRESS (Kubernetes expands only earlier "
          f"variables)")
    check(int(m.group(2)) == port_of(flags["listen"]),
          f"{where}: the advertised port {m.group(2)} is not --listen's")


def names_before(c, first, second):
    order = [e["name"] for e in c.get("env", [])]
    return first in order and second in order and \
        order.index(first) < order.index(second)


def etcd_sets(docs):
    """The StatefulSets in docs that run etcd (their command is etcd)."""
    return [d for d in docs if d.get("kind") == "StatefulSet" and
            os.path.basename(((d["spec"]["template"]["spec"]["containers"][0]
                               .get("command") or [""])[0])) == "etcd"]


def etcd_member_args(doc, ordinal):
    """Member `ordinal`'s etcd flags {name: value} and its argv, with the
    pod's variables expanded."""
    c = doc["spec"]["template"]["spec"]["containers"][0]
    name = f"{doc['metadata']['name']}-{ordinal}"
    env = resolve_env(c, {}, pod_fields(name, ordinal), {})
    argv = container_argv(c, {"entrypoint": [], "cmd": []}, env)
    flags = {}
    for arg in argv[1:]:
        m = re.match(r"--([a-z-]+)(?:=(.*))?$", arg)
        if check(m, f"{doc['metadata']['name']}: unexpected argument {arg!r}"):
            flags[m.group(1)] = "true" if m.group(2) is None else m.group(2)
    return flags, argv, env


def check_etcd(docs, flags, where):
    """The etcd StatefulSet the replicas' --etcd_endpoints name: its stable
    pod names, ports, peers, limits (README "etcd settings"), volumes,
    probes and governing Service."""
    sets = etcd_sets(docs)
    if not check(len(sets) == 1, f"{where}: one etcd StatefulSet expected in "
                 f"the manifest, found {len(sets)}"):
        return
    doc = sets[0]
    name = doc["metadata"]["name"]
    at = f"{where}: etcd {name}"
    spec = doc["spec"]
    members = spec.get("replicas", 1)
    check(members >= 3 and members % 2 == 1,
          f"{at}: {members} members; an odd number >= 3 keeps a quorum")
    check(spec.get("podManagementPolicy") == "Parallel",
          f"{at}: podManagementPolicy Parallel expected (a member waits for "
          f"a quorum of peers: OrderedReady never readies the first)")
    services = {d["metadata"]["name"]: d for d in docs
                if d.get("kind") == "Service"}
    governing = services.get(spec.get("serviceName"), {}).get("spec", {})
    check(governing.get("clusterIP") == "None" and
          governing.get("publishNotReadyAddresses") is True,
          f"{at}: serviceName {spec.get('serviceName')} is not a headless "
          f"Service publishing not-ready members (peers must resolve before "
          f"the quorum exists)")
    c = spec["template"]["spec"]["containers"][0]
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    for p in governing.get("ports", []):
        check(container_port(c, p.get("targetPort", p["port"]))
              in ports.values(), f"{at}: Service port {p['port']} targets "
              f"{p.get('targetPort')}, which the container does not expose")
    domain = f"{spec.get('serviceName')}.{NAMESPACE}.svc"
    stable = [f"{name}-{i}.{domain}" for i in range(members)]
    peers = []
    for i in range(members):
        etcd, _, _ = etcd_member_args(doc, i)
        pod = f"{name}-{i}"
        check(etcd.get("name") == pod, f"{at}: member {i}'s --name is "
              f"{etcd.get('name')}, not its pod name {pod}")
        client = [port_of(u) for u in etcd.get("listen-client-urls",
                                               "").split(",") if u]
        peer = [port_of(u) for u in etcd.get("listen-peer-urls",
                                             "").split(",") if u]
        check(client and set(client) <= set(ports.values()) and
              peer and set(peer) <= set(ports.values()),
              f"{at}: listen URLs' ports {client + peer} are not all "
              f"containerPorts {sorted(ports.values())}")
        check(etcd.get("advertise-client-urls") ==
              f"http://{stable[i]}:{client[0] if client else ''}",
              f"{at}: member {i} advertises "
              f"{etcd.get('advertise-client-urls')}, not its stable name "
              f"{stable[i]}")
        check(etcd.get("initial-advertise-peer-urls") ==
              f"http://{stable[i]}:{peer[0] if peer else ''}",
              f"{at}: member {i}'s peer URL is "
              f"{etcd.get('initial-advertise-peer-urls')}, not its stable "
              f"name {stable[i]}")
        peers.append(etcd.get("initial-cluster"))
        if i > 0:
            continue
        # README "etcd settings", and the replicas' limits equal etcd's.
        for etcd_flag, flag, default in (
                ("max-txn-ops", "etcd_max_txn_ops", "128"),
                ("max-request-bytes", "etcd_max_request_bytes", "1572864")):
            check(etcd.get(etcd_flag, default) == flags.get(flag, default),
                  f"{at}: --{etcd_flag}={etcd.get(etcd_flag, default)} but "
                  f"the replicas have --{flag}={flags.get(flag, default)}")
        check(int(etcd.get("max-txn-ops", 128)) >= 16384 and
              int(etcd.get("max-request-bytes", 0)) >= 8388608,
              f"{at}: --max-txn-ops / --max-request-bytes below README "
              f"\"etcd settings\"")
        check("quota-backend-bytes" in etcd and
              etcd.get("auto-compaction-mode") == "revision" and
              "auto-compaction-retention" in etcd,
              f"{at}: quota and revision auto compaction (README \"etcd "
              f"settings\") missing")
        metrics = [port_of(u) for u in etcd.get(
            "listen-metrics-urls", "").split(",") if u]
        check_etcd_pod(doc, c, etcd, ports, client + metrics, at)
    peer_port = ports.get("peer", 2380)
    want = ",".join(f"{name}-{i}=http://{stable[i]}:{peer_port}"
                    for i in range(members))
    check(all(p == want for p in peers),
          f"{at}: --initial-cluster {peers[0]} is not every member by its "
          f"stable name ({want})")
    endpoints = sorted(e.strip() for e in
                       flags.get("etcd_endpoints", "").split(",") if e)
    client_port = ports.get("client", 2379)
    check(endpoints == sorted(f"{h}:{client_port}" for h in stable),
          f"{where}: --etcd_endpoints {endpoints} are not the etcd members' "
          f"stable names on the client port ({stable}, {client_port})")


def check_etcd_pod(doc, c, etcd, ports, http_ports, at):
    """The etcd pod's data volume, probes and scrape annotations."""
    mounts = c.get("volumeMounts", [])
    claims = {t["metadata"]["name"] for t in
              doc["spec"].get("volumeClaimTemplates", [])}
    data = [m for m in mounts if under(etcd.get("data-dir", "/"),
                                       m["mountPath"])]
    check(len(data) == 1 and data[0]["name"] in claims and
          not data[0].get("readOnly"),
          f"{at}: --data-dir={etcd.get('data-dir')} is not on a writable "
          f"volume claim")
    probes = [(k, c[k]) for k in ("readinessProbe", "livenessProbe",
                                  "startupProbe") if k in c]
    check(len(probes) >= 2, f"{at}: readiness and liveness probes wanted")
    for kind, probe in probes:
        target = probe.get("httpGet") or probe.get("tcpSocket") or {}
        port = container_port(c, target.get("port"))
        check(port in http_ports, f"{at}: {kind} probes port {port}, where "
              f"etcd serves no HTTP ({sorted(http_ports)})")
        if "httpGet" in probe:
            check(probe["httpGet"].get("path") == "/health",
                  f"{at}: {kind} should GET /health")
    annotations = doc["spec"]["template"]["metadata"].get("annotations", {})
    if annotations.get("prometheus.io/scrape") == "true":
        check(int(annotations.get("prometheus.io/port", 0)) in http_ports,
              f"{at}: prometheus.io/port serves no /metrics")


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


def run_server(name, argv, env, workdir, stubs, tls_root, expect_node,
               expect_metrics=()):
    """Runs argv with env (nothing else), checks it, stops it with SIGTERM.
    /metrics must also hold each line of expect_metrics."""
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
        if expect_metrics:
            # The cluster gauges follow the replica's role a moment after
            # the election: scrape until they do (bounded).
            def has_all():
                return all(want in scrape(local(metrics)).splitlines()
                           for want in expect_metrics)
            try:
                wait_for(f"{name}: {list(expect_metrics)} on /metrics",
                         has_all, timeout=10, interval=0.05)
            except TimeoutError as e:
                check(False, str(e))
        if health:
            # SIGTERM: the health port follows the server's health, so
            # probes see NOT_SERVING while it drains (--shutdown_drain).
            # Watched, not polled: the change is pushed on a stream opened
            # before the signal, so a slow poll cannot miss a short drain
            # (the systemd unit's is 1 s) on a loaded machine.
            updates = stubs.hpb_grpc.HealthStub(plain).Watch(
                stubs.hpb.HealthCheckRequest(service=SERVICE), timeout=30)
            statuses = []
            try:
                for update in updates:
                    statuses.append(stubs.hpb.HealthCheckResponse
                                    .ServingStatus.Name(update.status))
                    if len(statuses) == 1:
                        check(statuses[0] == "SERVING",
                              f"{name}: health Watch on {health} began "
                              f"with {statuses[0]}, expected SERVING")
                        proc.send_signal(signal.SIGTERM)
                    elif statuses[-1] != "SERVING":
                        break
            except grpc.RpcError as e:
                statuses.append(f"stream ended: {e.code().name}")
            check(statuses[1:] and statuses[-1] == "NOT_SERVING",
                  f"{name}: health Watch on {health} saw {statuses} after "
                  f"SIGTERM, expected NOT_SERVING while draining")
            updates.cancel()
    finally:
        for ch in channels:
            ch.close()
        code, stopped = terminate(proc, timeout=30)
        check(stopped, f"{name}: did not stop within 30 s of SIGTERM")
        check(code == 0, f"{name}: exit status {code} after SIGTERM:\n"
              f"{log_text()}")
    print(f"{name}: started, healthy, answered, stopped")


class ManifestEtcd:
    """The etcd StatefulSet's members as its pods run them (command, args,
    env), in the test's network namespace: every port in the arguments
    becomes a free one per member and container port (its 0.0.0.0
    listeners stay on 0.0.0.0), the members' stable names become `host`,
    the image's etcd binary /usr/bin/etcd and the data volume a temp dir.
    Waits until every member reports /health true."""

    def __init__(self, doc, tmp, host="127.0.0.1"):
        self.host = host
        self.name = doc["metadata"]["name"]
        self.members = doc["spec"].get("replicas", 1)
        c = doc["spec"]["template"]["spec"]["containers"][0]
        domain = f"{doc['spec'].get('serviceName')}.{NAMESPACE}.svc"
        container_ports = [p["containerPort"] for p in c.get("ports", [])]
        held = []
        for _ in range(self.members * len(container_ports)):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
        free = iter([sock.getsockname()[1] for sock in held])
        for sock in held:
            sock.close()
        self.local = [{p: next(free) for p in container_ports}
                      for _ in range(self.members)]
        self.stable = {}
        for i in range(self.members):
            for p, local in self.local[i].items():
                self.stable[f"{self.name}-{i}.{domain}:{p}"] = \
                    f"{host}:{local}"
        self.procs, self.logs = [], []
        binary = c["command"][0]
        for i in range(self.members):
            _, argv, pod_env = etcd_member_args(doc, i)
            data = os.path.join(tmp, f"{self.name}-{i}")
            os.makedirs(data)
            own = {f"0.0.0.0:{p}": f"0.0.0.0:{local}"
                   for p, local in self.local[i].items()}
            mounts = {m["mountPath"]: data for m in c.get("volumeMounts", [])}
            argv = substitute([self.localize(a, own) for a in argv],
                              dict(mounts, **{binary: "/usr/bin/etcd"}))
            env = base_env()  # no ETCD_* leaks in: etcd reads them as flags
            env.update(pod_env)
            log = os.path.join(tmp, f"{self.name}-{i}.log")
            self.logs.append(log)
            with open(log, "wb") as out:
                self.procs.append(subprocess.Popen(
                    argv, env=env, stdout=out, stderr=out, cwd=data))

    def localize(self, text, extra=None):
        mapping = dict(self.stable, **(extra or {}))
        return re.sub(r"[A-Za-z0-9.-]+:\d+",
                      lambda m: mapping.get(m.group(0), m.group(0)), text)

    def healthy(self, i):
        """True once member i reports /health true; "exited" if it died."""
        if self.procs[i].poll() is not None:
            return "exited"
        # /health is served on the client URL (and the metrics URL).
        for p in sorted(self.local[i].values()):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{p}/health",
                                            timeout=2) as r:
                    return json.loads(r.read()).get("health") == "true"
            except (OSError, ValueError):
                continue
        return False

    def __enter__(self):
        try:
            for i in range(self.members):
                if wait_for(f"etcd member {i} healthy",
                            lambda i=i: self.healthy(i), timeout=60,
                            interval=0.1) == "exited":
                    with open(self.logs[i], "rb") as f:
                        tail = f.read().decode(errors="replace")[-1500:]
                    raise RuntimeError(
                        f"etcd member {i} exited with "
                        f"{self.procs[i].returncode}:\n{tail}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            terminate(proc, timeout=10)


POD_NET = "10.77.0"  # the pods' subnet; the test's namespace is .1
PODS = 3


def pod_ip(k):
    return f"{POD_NET}.{10 + k}"


class PodNetwork:
    """Pods with network namespaces of their own, as on a node: a bridge in
    the test's namespace ({POD_NET}.1/24) and per pod a veth pair into the
    pod's namespace, whose eth0 has the pod IP. A process started here runs
    in its pod's namespace with argv and env unchanged (a shell holds it
    until the namespace is wired, then execs it)."""

    BRIDGE = "pods0"

    def __init__(self):
        ip = ["ip", "link", "add", self.BRIDGE, "type", "bridge"]
        subprocess.run(ip, check=True, capture_output=True)
        for cmd in (["ip", "addr", "add", f"{POD_NET}.1/24", "dev",
                     self.BRIDGE], ["ip", "link", "set", self.BRIDGE, "up"]):
            subprocess.run(cmd, check=True, capture_output=True)

    def start(self, k, argv, env, cwd, log):
        proc = subprocess.Popen(
            ["unshare", "--net", "--", "/bin/sh", "-c",
             'read go && exec "$@"', "pod"] + argv, stdin=subprocess.PIPE,
            env=env, cwd=cwd, stdout=log, stderr=log)
        own = os.readlink("/proc/self/ns/net")
        wait_for(f"pod {k}'s network namespace",
                 lambda: os.readlink(f"/proc/{proc.pid}/ns/net") != own,
                 timeout=10, interval=0.01)
        veth = f"pod{k}"
        for cmd in (
                ["ip", "link", "add", veth, "type", "veth", "peer", "name",
                 "eth0", "netns", str(proc.pid)],
                ["ip", "link", "set", veth, "master", self.BRIDGE, "up"],
                ["nsenter", f"--net=/proc/{proc.pid}/ns/net", "sh", "-c",
                 f"ip link set lo up && ip addr add {pod_ip(k)}/24 dev eth0"
                 f" && ip link set eth0 up"]):
            subprocess.run(cmd, check=True, capture_output=True)
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        return proc


def pod_network():
    """A PodNetwork, or None where the kernel has no bridge or veth."""
    try:
        return PodNetwork()
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"no pod network ({e}): one replica only")
        return None


def run_pods_with_etcd(where, c, doc, etcd_doc, image, mapping, workdir,
                       tmp, stubs, tls_root, net):
    """PODS replicas of the Deployment `doc` (its container c), each in its
    own network namespace with its pod IP, against the members of etcd_doc
    listening in the test's namespace: the etcd endpoints and the pod IP
    substituted, nothing else. Each answers health on both ports and
    /metrics; one is elected writer and all name it at its pod IP; an Issue
    on the writer gives an ID of its claimed node, which every follower
    validates VALID; the health port refuses the API; SIGTERM stops each
    with status 0. Each follower forwards an Issue to the writer's pod IP
    over TLS, checking its certificate against the headless Service's name
    and the Secret's ca.crt."""
    import grpc
    with ManifestEtcd(etcd_doc, tmp, host=f"{POD_NET}.1") as etcd:
        procs, logs, channels = [], [], []
        try:
            for k in range(PODS):
                fields = pod_fields(f"{doc['metadata']['name']}-{k}", k,
                                    pod_ip=pod_ip(k))
                container_env = resolve_env(c, image["env"], fields, KEYS)
                container_env["REGISTRAR_ETCD_ENDPOINTS"] = etcd.localize(
                    container_env.get("REGISTRAR_ETCD_ENDPOINTS", ""))
                env = base_env()
                env.update(dict(zip(container_env, substitute(
                    container_env.values(), mapping))))
                argv = substitute(container_argv(c, image, container_env),
                                  mapping)
                flags = server_flags(argv, env)
                logs.append(os.path.join(tmp, f"pod{k}.log"))
                with open(logs[-1], "wb") as log:
                    procs.append(net.start(k, argv, env, workdir, log))
            at = lambda k, f: f"{pod_ip(k)}:{port_of(flags[f])}"  # noqa

            def log_text(k):
                with open(logs[k], "rb") as f:
                    return f.read().decode(errors="replace")[-3000:]

            def answers(k, flag):
                if procs[k].poll() is not None:
                    raise RuntimeError(f"pod {k} exited with "
                                       f"{procs[k].returncode}:\n"
                                       f"{log_text(k)}")
                with socket.socket() as sock:
                    return sock.connect_ex((pod_ip(k), port_of(
                        flags[flag]))) == 0

            def serving(ch, service=SERVICE):
                reply = stubs.hpb_grpc.HealthStub(ch).Check(
                    stubs.hpb.HealthCheckRequest(service=service), timeout=5)
                return reply.status == stubs.hpb.HealthCheckResponse.SERVING

            api, plain = [], []
            for k in range(PODS):
                for flag in ("listen", "health_listen", "metrics_listen"):
                    wait_for(f"{where} pod {k}: {flag} listening",
                             lambda k=k, f=flag: answers(k, f), timeout=30,
                             interval=0.05)
                # As a client dialing the headless Service reaches this
                # pod: its IP, the Service's name in the certificate.
                api.append(grpc.secure_channel(
                    at(k, "listen"), grpc.ssl_channel_credentials(
                        root_certificates=tls_root), options=[(
                            "grpc.ssl_target_name_override",
                            f"registrar-headless.{NAMESPACE}.svc")]))
                plain.append(grpc.insecure_channel(at(k, "health_listen")))
                channels += [api[k], plain[k]]
            for k in range(PODS):
                wait_for(f"{where} pod {k}: SERVING on the API port",
                         lambda k=k: serving(api[k]), timeout=30,
                         interval=0.1)
                check(serving(plain[k]) and serving(plain[k], ""),
                      f"{where} pod {k}: health port not SERVING")

            def roles():
                texts = [scrape(at(k, "metrics_listen")) for k in
                         range(PODS)]
                writers = [k for k in range(PODS) if
                           "registrar_cluster_is_leader 1" in
                           texts[k].splitlines()]
                if len(writers) != 1:
                    return None
                named = f'registrar_cluster_writer{{address=' \
                    f'"{at(writers[0], "listen")}"}} 1'
                if all(named in t.splitlines() for t in texts):
                    return writers[0], texts
                return None
            writer, texts = wait_for(f"{where}: one writer, named by all at "
                                     f"its pod IP", roles, timeout=30,
                                     interval=0.1)
            for k in range(PODS):
                check("registrar_build_info{" in texts[k],
                      f"{where} pod {k}: /metrics lacks registrar_build_info")
            owner = stubs.pb.Owner(tenant="acme", user_id="alice")
            reply = stubs.pb_grpc.RegistrarStub(api[writer]).Issue(
                stubs.pb.IssueRequest(kind=stubs.pb.KIND_THREAD, owner=owner,
                                      count=1), timeout=10)
            check(len(reply.ids) == 1 and node_of(reply.ids[0]) < PODS,
                  f"{where}: Issue on the writer returned {reply.ids}")
            followers = [k for k in range(PODS) if k != writer]
            for k in followers:
                verdicts = stubs.pb_grpc.RegistrarStub(api[k]).Validate(
                    stubs.pb.ValidateRequest(owner=owner, items=[
                        stubs.pb.ValidateItem(id=i) for i in reply.ids]),
                    timeout=10)
                check([r.verdict for r in verdicts.results] ==
                      [stubs.pb.VERDICT_VALID],
                      f"{where} pod {k}: the writer's ID is not VALID on a "
                      f"follower: {verdicts}")
            for k in range(PODS):
                try:
                    stubs.pb_grpc.RegistrarStub(plain[k]).Issue(
                        stubs.pb.IssueRequest(kind=stubs.pb.KIND_THREAD,
                                              owner=owner), timeout=10)
                    check(False, f"{where} pod {k}: Issue on the health port")
                except grpc.RpcError as e:
                    check(e.code() == grpc.StatusCode.UNIMPLEMENTED,
                          f"{where} pod {k}: Issue on the health port: "
                          f"{e.code()}, expected UNIMPLEMENTED")
            # Each follower forwards an Issue to the writer's pod IP over
            # TLS (the certificate names the headless Service, not the
            # pod IP); the ID is the writer's and valid there.
            for k in followers:
                try:
                    issued = stubs.pb_grpc.RegistrarStub(api[k]).Issue(
                        stubs.pb.IssueRequest(kind=stubs.pb.KIND_THREAD,
                                              owner=owner), timeout=10).ids
                except grpc.RpcError as e:
                    check(False, f"{where} pod {k}: an Issue on a follower "
                          f"was not forwarded to the writer: "
                          f"{e.code().name}: {e.details()[:300]}")
                    continue
                verdicts = stubs.pb_grpc.RegistrarStub(api[writer]).Validate(
                    stubs.pb.ValidateRequest(owner=owner, items=[
                        stubs.pb.ValidateItem(id=i) for i in issued]),
                    timeout=10)
                check(len(issued) == 1 and
                      [r.verdict for r in verdicts.results] ==
                      [stubs.pb.VERDICT_VALID],
                      f"{where} pod {k}: the forwarded Issue's {issued} is "
                      f"not VALID on the writer: {verdicts}")
        finally:
            for ch in channels:
                ch.close()
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for k, proc in enumerate(procs):
                code, stopped = terminate(proc, timeout=30)
                check(stopped and code == 0, f"{where} pod {k}: exit status "
                      f"{code} after SIGTERM:\n{log_text(k)}")
    print(f"{where}: {PODS} replicas started, healthy, one writer, "
          f"answered, forwarded, stopped")


def run_with_etcd(where, c, doc, etcd_doc, image, mapping, workdir, tmp,
                  stubs, tls_root):
    """Runs one replica of the Deployment `doc` (its container c) against
    the members of etcd_doc (ManifestEtcd): the etcd endpoints and the pod
    IP substituted, nothing else."""
    with ManifestEtcd(etcd_doc, tmp) as etcd:
        fields = pod_fields(f"{doc['metadata']['name']}-0", 0,
                            pod_ip="127.0.0.1")
        container_env = resolve_env(c, image["env"], fields, KEYS)
        endpoints = container_env.get("REGISTRAR_ETCD_ENDPOINTS", "")
        local = etcd.localize(endpoints)
        check(local != endpoints, f"{where}: --etcd_endpoints {endpoints} "
              f"name none of the etcd members")
        container_env["REGISTRAR_ETCD_ENDPOINTS"] = local
        env = base_env()
        env.update(dict(zip(container_env, substitute(
            container_env.values(), mapping))))
        # The first replica on a fresh prefix claims node id 0, is elected
        # writer and names itself at its advertise address (the pod IP).
        advertise = server_flags([], container_env).get("advertise_address")
        run_server(where, substitute(container_argv(c, image, container_env),
                                     mapping), env, workdir, stubs, tls_root,
                   expect_node=0, expect_metrics=(
                       "registrar_cluster_is_leader 1",
                       f'registrar_cluster_writer{{address="{advertise}"}} 1'))


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
# False under TSan (--static_etcd): the replicas' etcd client is not run
# there, as tests/cluster is not; the manifests are still checked.
RUN_ETCD = True


def main_in_netns(binary):
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="deploy-test-") as tmp:
        stubs = Stubs(tmp)
        tls_dir = os.path.join(tmp, "tls")
        os.makedirs(tls_dir)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-days", "1", "-subj", "/CN=registrar",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,"
             f"DNS:registrar-headless.{NAMESPACE}.svc",
             "-keyout", os.path.join(tls_dir, "tls.key"),
             "-out", os.path.join(tls_dir, "tls.crt")],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(tls_dir, "tls.crt"), "rb") as f:
            tls_root = f.read()
        # Self-signed: its own CA, as a Secret's ca.crt.
        with open(os.path.join(tls_dir, "ca.crt"), "wb") as f:
            f.write(tls_root)
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
            etcd_docs = etcd_sets(docs)
            for doc in docs:
                if doc.get("kind") not in ("StatefulSet", "Deployment") or \
                        doc in etcd_docs:
                    continue
                workloads += 1
                where = f"{os.path.basename(path)} {doc['metadata']['name']}"
                c = check_workload(doc, docs, image, where)
                mapping = container_paths(f"k8s-{workloads}")
                workdir = substitute([c.get("workingDir", image["workdir"])],
                                     mapping)[0]
                if "REGISTRAR_STORE" not in {e["name"] for e in
                                             c.get("env", [])}:
                    # Pod ordinal 1: its IDs must carry node 1.
                    fields = pod_fields(f"{doc['metadata']['name']}-1", 1)
                    container_env = resolve_env(c, image["env"], fields, KEYS)
                    env = base_env()
                    env.update(dict(zip(container_env, substitute(
                        container_env.values(), mapping))))
                    run_server(where, substitute(container_argv(
                        c, image, container_env), mapping), env, workdir,
                        stubs, tls_root, expect_node=1)
                    continue
                if not RUN_ETCD or len(etcd_docs) != 1:
                    why = ("the etcd client is not run under TSan (see "
                           "tests/cluster)" if not RUN_ETCD else
                           "no etcd StatefulSet to run it against")
                    print(f"{where}: checked, not run: {why}")
                    continue
                # Three replicas of the Deployment in pod network
                # namespaces (else one, in this namespace) against the
                # manifest's etcd members. Only the etcd endpoints and the
                # pod IP are substituted.
                net = pod_network()
                try:
                    if net is not None:
                        run_pods_with_etcd(where, c, doc, etcd_docs[0], image,
                                           mapping, workdir, tmp, stubs,
                                           tls_root, net)
                    else:
                        run_with_etcd(where, c, doc, etcd_docs[0], image,
                                      mapping, workdir, tmp, stubs, tls_root)
                except (RuntimeError, TimeoutError) as e:
                    check(False, f"{where}: {e}")
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
    global RUN_ETCD
    args = sys.argv[1:]
    if "--static_etcd" in args:
        args.remove("--static_etcd")
        RUN_ETCD = False
    binary = os.path.abspath(args[0])
    if os.environ.get(IN_NETNS) == "1":
        return main_in_netns(binary)
    unshare = ["unshare", "--net"]
    if os.geteuid() != 0:
        unshare = ["unshare", "--user", "--map-root-user", "--net"]
    env = dict(os.environ)
    env[IN_NETNS] = "1"
    return subprocess.run(unshare + [sys.executable, os.path.abspath(__file__)]
                          + sys.argv[1:], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
