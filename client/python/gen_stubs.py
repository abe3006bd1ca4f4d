#!/usr/bin/env python3
"""Generates registrar_client's gRPC stubs from the repository's protos.

Used by setup.py (pip install ./client/python) and by the CMake target
`registrar_python_client` (the build tree); nothing it writes is checked in.

The stubs go to <package>/_gen/: registrar/v1/registrar_pb2{,_grpc}.py,
registrar/v1/admin_pb2{,_grpc}.py and google/rpc/{status,error_details}_pb2.py
(Debian 12 ships no googleapis-common-protos), generated with Debian's
protoc and /usr/bin/grpc_python_plugin. protoc writes absolute imports
(`from registrar.v1 import registrar_pb2`); they are rewritten to point into
registrar_client._gen so the package needs nothing on sys.path but itself.

    gen_stubs.py --proto-root PROTO_DIR --out PACKAGE_DIR [--copy-from SRC]

--copy-from copies the package's own .py files from SRC into PACKAGE_DIR
first (the build tree gets a complete, importable package).
"""

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

PROTOS = (
    "registrar/v1/registrar.proto",
    "registrar/v1/admin.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
)
GRPC_PROTOS = ("registrar/v1/registrar.proto", "registrar/v1/admin.proto")
# Top-level proto packages that are generated here (imports of them are
# rewritten); google.protobuf stays as Debian's python3-protobuf has it.
_LOCAL_IMPORT = re.compile(r"^from (registrar\.v1|google\.rpc) import ",
                           re.MULTILINE)


def find_tool(name, fallback):
    path = shutil.which(name)
    if path:
        return path
    if os.path.exists(fallback):
        return fallback
    sys.exit(f"gen_stubs: {name} not found (apt-get install "
             "protobuf-compiler protobuf-compiler-grpc)")


def generate(proto_root, package_dir):
    proto_root = pathlib.Path(proto_root).resolve()
    package_dir = pathlib.Path(package_dir)
    protoc = find_tool("protoc", "/usr/bin/protoc")
    plugin = find_tool("grpc_python_plugin", "/usr/bin/grpc_python_plugin")
    gen_dir = package_dir / "_gen"
    # Generate into a scratch dir, then replace _gen in one step, so an
    # interrupted run never leaves a half-written package behind.
    with tempfile.TemporaryDirectory(dir=package_dir) as scratch:
        out = pathlib.Path(scratch) / "_gen"
        out.mkdir()
        include = ["-I", str(proto_root), "-I", "/usr/include"]
        subprocess.run([protoc, *include, f"--python_out={out}",
                        *[str(proto_root / p) for p in PROTOS]], check=True)
        subprocess.run([protoc, *include, f"--grpc_python_out={out}",
                        f"--plugin=protoc-gen-grpc_python={plugin}",
                        *[str(proto_root / p) for p in GRPC_PROTOS]],
                       check=True)
        for py in out.rglob("*.py"):
            text = py.read_text()
            py.write_text(_LOCAL_IMPORT.sub(
                lambda m: f"from registrar_client._gen.{m.group(1)} import ",
                text))
        for directory in [out, *[d for d in out.rglob("*") if d.is_dir()]]:
            (directory / "__init__.py").touch()
        if gen_dir.exists():
            shutil.rmtree(gen_dir)
        out.rename(gen_dir)


def copy_package(source_dir, package_dir):
    package_dir.mkdir(parents=True, exist_ok=True)
    for item in pathlib.Path(source_dir).iterdir():
        if item.is_file() and item.suffix in (".py", ".typed"):
            shutil.copy2(item, package_dir / item.name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proto-root", required=True)
    parser.add_argument("--out", required=True, help="the package directory")
    parser.add_argument("--copy-from", help="package sources to copy first")
    args = parser.parse_args()
    package_dir = pathlib.Path(args.out)
    if args.copy_from:
        copy_package(args.copy_from, package_dir)
    package_dir.mkdir(parents=True, exist_ok=True)
    generate(args.proto_root, package_dir)


if __name__ == "__main__":
    main()
