"""The benchmark's own venvs for the libraries it compares against (amshan 2021.12.1, dsmr_parser)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List


def venv_python(folder: Path, specs: List[str], check: str) -> Path:
    """Return the python of a venv holding specs, made on first use (and again when Python changes).

    check is Python code that must run in it (an import), so a broken install fails here, not mid-run.
    """
    bindir = "Scripts" if os.name == "nt" else "bin"
    python = folder / bindir / ("python.exe" if os.name == "nt" else "python")
    stamp = folder / ".installed"
    # the same Python as ours, or the ratios would compare interpreters too
    wanted = f"{' '.join(specs)} on Python {sys.version_info[0]}.{sys.version_info[1]}\n"
    if python.exists() and stamp.is_file() and stamp.read_text(encoding="utf-8") == wanted:
        return python
    print(f"creating {folder}: {wanted.strip()} ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *specs],
        capture_output=True,
        text=True,
        check=False,
    )
    if pip.returncode != 0:
        raise SystemExit(f"pip install {' '.join(specs)} failed:\n{pip.stdout}{pip.stderr}")
    subprocess.run([str(python), "-c", check], check=True, cwd=str(folder.parent))
    stamp.write_text(wanted, encoding="utf-8")
    return python
