"""Suite-wide rules (no command line run by any test may print a Python traceback) and shared fixtures."""

from __future__ import annotations

import os
import pty
import subprocess
from typing import Any, AsyncIterator

import pytest
from _processes import assert_no_traceback


class _CheckedPopen(subprocess.Popen):  # type: ignore[type-arg]
    """Popen whose communicate() (and so subprocess.run) fails the test when amshan printed a traceback."""

    def communicate(self, *args: Any, **kwargs: Any) -> Any:
        stdout, stderr = super().communicate(*args, **kwargs)
        assert_no_traceback(self.args, stderr)
        return stdout, stderr


@pytest.fixture(autouse=True)
def _no_traceback_from_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "Popen", _CheckedPopen)


@pytest.fixture
async def openpty() -> AsyncIterator[tuple[int, str]]:
    """A real pseudo-terminal pair: (the master's non-blocking fd, the slave's path), both closed after."""
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    try:
        yield master, os.ttyname(slave)
    finally:
        os.close(slave)
        os.close(master)
