"""pip install ./client/python  (from the repository root; no network).

The gRPC stubs are generated while building (gen_stubs.py: Debian's protoc
and /usr/bin/grpc_python_plugin) from ../../proto, or from the directory in
REGISTRAR_PROTO_ROOT; none is checked in. Needs python3-grpcio,
python3-protobuf, protobuf-compiler and protobuf-compiler-grpc.
"""

import os
import pathlib
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gen_stubs  # noqa: E402  pylint: disable=wrong-import-position


class BuildWithStubs(build_py):
    """build_py, then the stubs into the built package."""

    def run(self):
        super().run()
        proto_root = os.environ.get("REGISTRAR_PROTO_ROOT",
                                    str(HERE.parent.parent / "proto"))
        if not (pathlib.Path(proto_root) /
                "registrar/v1/registrar.proto").exists():
            sys.exit(f"registrar_client: no registrar/v1/registrar.proto "
                     f"under {proto_root}; set REGISTRAR_PROTO_ROOT")
        gen_stubs.generate(proto_root,
                           pathlib.Path(self.build_lib) / "registrar_client")


setup(
    name="registrar-client",
    version="0.1.0",
    description="Python client (grpc.aio and blocking) for Registrar",
    packages=["registrar_client"],
    package_data={"registrar_client": ["py.typed"]},
    python_requires=">=3.9",
    # Debian's python3-grpcio and python3-protobuf provide these; no index
    # is needed when they are installed.
    install_requires=["grpcio>=1.51", "protobuf>=3.21"],
    cmdclass={"build_py": BuildWithStubs},
)
