"""Fixtures: a registrar server per test module (memory store)."""

import pytest

from harness import ServerProcess


@pytest.fixture(scope="module")
def server():
    s = ServerProcess().start()
    yield s
    s.close()
