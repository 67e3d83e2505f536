"""Suite-wide rules: no command line run by any test may print a Python traceback."""

from __future__ import annotations

import subprocess
from typing import Any

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
