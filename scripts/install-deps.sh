#!/usr/bin/env bash
# Installs the Debian 12 packages Registrar builds, runs and tests with.
# The one list of them: .ci/run and the README's set-up command use this.
# Works as root, or through sudo.
set -euo pipefail

packages=(
  cmake g++ pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev librocksdb-dev libspdlog-dev
  libgtest-dev libgmock-dev libbenchmark-dev libsodium-dev
  grpc-proto python3-grpcio openssl curl
  # deploy/ checks: promtool and prometheus (tests/prometheus), manifests
  # parsed with python3-yaml (tests/deploy), ip and unshare (iproute2,
  # util-linux), systemd-analyze (systemd)
  prometheus python3-yaml iproute2 util-linux systemd
  # the Python client (client/python), its tests and the gateway example
  python3-protobuf python3-pytest python3-websockets python3-pip
  python3-venv python3-setuptools python3-wheel
  # clang, its sanitizer and libFuzzer runtimes, llvm-symbolizer (readable
  # sanitizer stacks): scripts/ci-sanitizers.sh
  clang libclang-rt-14-dev llvm
  etcd-server etcd-client redis-server libhiredis-dev
  # etcd's gRPC API protos (proto/etcd_api) and their imports
  golang-etcd-server-dev
)

if [[ "$(id -u)" -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-deps: installing packages needs root or sudo" >&2
  exit 1
fi

"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get -o Acquire::Retries=3 update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get -o Acquire::Retries=3 install -y -q "${packages[@]}"
