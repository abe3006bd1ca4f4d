"""`pip install ./client/python` works offline on Debian's packages (stubs
generated while building), and the installed package talks to the server."""

import os
import shutil
import subprocess

from harness import PYTHON, SOURCE_DIR


def test_pip_install_builds_stubs_and_the_package_works(tmp_path, server):
    # Install from a copy so the build leaves nothing in the source tree.
    tree = tmp_path / "src"
    shutil.copytree(SOURCE_DIR / "client/python", tree / "client/python",
                    ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                  "_gen", "__pycache__"))
    shutil.copytree(SOURCE_DIR / "proto", tree / "proto")
    env_dir = tmp_path / "venv"
    # The venv sees Debian's python3-grpcio and python3-protobuf.
    subprocess.run([PYTHON, "-m", "venv", "--system-site-packages",
                    str(env_dir)], check=True)
    python = str(env_dir / "bin/python")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([python, "-m", "pip", "install", "--no-index", "-q",
                    "./client/python"], cwd=tree, env=env, check=True)
    script = (
        "import registrar_client as rc, sys\n"
        "assert 'site-packages' in rc.__file__, rc.__file__\n"
        "with rc.Client(sys.argv[1]) as c:\n"
        "    [t] = c.issue('thread', ('acme', 'pip'))\n"
        "    [r] = c.validate([t], owner=('acme', 'pip'))\n"
        "    print(rc.pb.Verdict.Name(r.verdict))\n")
    out = subprocess.run([python, "-c", script, server.address], cwd=tmp_path,
                         env=env, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "VERDICT_VALID"
