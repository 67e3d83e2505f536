"""Shared test helpers: the real-frame corpus beside the project, and the rule for real components."""

from __future__ import annotations

import json
import os
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the project; mutmut runs the tests from a copy one level down (mutants/), so look upwards
CORPUS_DIR = next(
    (up / "shared" / "corpus" for up in PROJECT_ROOT.parents if (up / "shared" / "corpus").is_dir()),
    PROJECT_ROOT.parent / "shared" / "corpus",
)

INSTALL_HINT = {
    "socat": "apt-get install socat",
    "ser2net": "apt-get install ser2net",
    "influxd": "apt-get install influxdb",
    "mosquitto": "apt-get install mosquitto",
    "mosquitto_passwd": "apt-get install mosquitto",
    "openssl": "apt-get install openssl",
}


@cache
def load_corpus(name: str = "frames.jsonl") -> list[dict[str, Any]]:
    """Return every vector of a corpus file; a missing corpus is an error, never a skip."""
    path = CORPUS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"the corpus {path} is missing: ../shared/corpus must sit beside the project")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def corpus_frames(**match: Any) -> list[dict[str, Any]]:
    """Return the frames.jsonl vectors whose fields equal every given value."""
    return [v for v in load_corpus() if all(v.get(k) == want for k, want in match.items())]


@cache
def plain_apdus() -> tuple[bytes, ...]:
    """The APDUs (no LLC header) of every unencrypted valid corpus HDLC message that AutoDecoder decodes."""
    from amshan.autodecoder import AutoDecoder
    from amshan.hdlc import HdlcFrameReader, HdlcMessageAssembler

    apdus = []
    decoder = AutoDecoder()
    for vector in corpus_frames(layer="hdlc", valid=True, encrypted=False):
        assembler = HdlcMessageAssembler()
        for frame in HdlcFrameReader().read(bytes.fromhex(vector["hex"])):
            content = assembler.add(frame)
            if content and content.startswith(b"\xe6\xe7\x00") and decoder.decode_frame_content(content):
                apdus.append(content[3:])
    return tuple(apdus)


def require_tool(name: str) -> str:
    """Return a real component's path; under CI=true a missing one fails the test, locally it skips."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed: {INSTALL_HINT.get(name, 'install ' + name)}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + " (CI=true: real-component tests must run)")
    pytest.skip(message)
