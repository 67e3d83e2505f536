"""Each example in examples/ runs as a script against real inputs: corpus captures, the simulator, influxd."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from _processes import run_bounded
from _support import PROJECT_ROOT, corpus_frames, load_corpus
from test_influxdb import DATABASE, InfluxServer, influxd  # noqa: F401 - the real-influxd fixture

from amshan.simulator import MeterSimulator

EXAMPLES = PROJECT_ROOT / "examples"
TIMEOUT = 60


def checked_vectors(meter: str) -> list[dict[str, Any]]:
    return [
        vector
        for vector in corpus_frames(layer="hdlc", valid=True, country="NO", values_checked=True, meter=meter)
        if vector["values"].get("meter_id")
    ]


def exact_items(vector: dict[str, Any]) -> list[str]:
    """The stated values that print exactly as Python reprs (text and whole numbers)."""
    return [f"{key!r}: {value!r}" for key, value in vector["values"].items() if isinstance(value, (str, int))]


async def run_example(name: str, *args: str) -> str:
    script = str(EXAMPLES / name)
    returncode, stdout, stderr = await run_bounded(sys.executable, script, *args, timeout=TIMEOUT)
    assert returncode == 0, stderr
    return stdout


def test_decode_file(tmp_path: Path) -> None:
    vectors = checked_vectors("kamstrup") + checked_vectors("kaifa")
    capture = tmp_path / "capture.bin"
    capture.write_bytes(b"\x7e\x7e".join(bytes.fromhex(vector["hex"]) for vector in vectors))
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "decode_file.py"), str(capture)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert len(lines) == len(vectors)
    for line, vector in zip(lines, vectors):
        assert line.startswith(vector["meter"].capitalize() + " {")
        for item in exact_items(vector):
            assert item in line, (vector["id"], item)


async def test_reader_async_over_tcp() -> None:
    vectors = checked_vectors("kamstrup")
    frames = [bytes.fromhex(vector["hex"]) for vector in vectors]
    async with MeterSimulator(frames, interval=0.02) as simulator:
        output = await run_example("reader_async.py", f"tcp://127.0.0.1:{simulator.port}", "--count", "5")
    lines = output.splitlines()
    assert len(lines) == 5
    for line, vector in zip(lines, vectors):
        for item in exact_items(vector):
            assert item in line, (vector["id"], item)


async def test_obis_dump_over_tcp() -> None:
    [vector] = [v for v in load_corpus() if v["id"] == "no-kaifa-list2-gh180-2"]
    async with MeterSimulator([bytes.fromhex(vector["hex"])], interval=0.02) as simulator:
        output = await run_example("obis_dump.py", f"tcp://127.0.0.1:{simulator.port}", "--count", "2")
    assert output.count("--- list") == 2
    assert "from a Kaifa meter" in output
    # Kaifa lists carry no OBIS codes: each item gets its documented code (spec, Kaifa list 2).
    assert "1.0.1.7.0.255    : {'name': 'active_power_import', 'value': 4097, 'unit': 'W'}" in output
    assert "0.0.96.1.0.255   : {'name': 'meter_id', 'value': '6970631403275928', 'unit': None}" in output


async def test_influxdb_forward(influxd: InfluxServer) -> None:  # noqa: F811 - the fixture
    # One real meter's lists, each with its own clock reading (the vendor examples share one time stamp).
    vectors = [vector for vector in checked_vectors("kamstrup") if "-em001-" in vector["id"]]
    frames = [bytes.fromhex(vector["hex"]) for vector in vectors]
    async with MeterSimulator(frames, interval=0.02, repeat=False) as simulator:
        output = await run_example(
            "influxdb_forward.py",
            f"tcp://127.0.0.1:{simulator.port}",
            influxd.url,
            DATABASE,
            "--count",
            str(len(vectors)),
        )
    assert f"{len(vectors)} points written, 0 not written" in output
    rows = influxd.query("SELECT * FROM amshan")
    assert len(rows) == len(vectors)  # each list carries its own meter time: one point each
    assert sorted(row["active_power_import"] for row in rows) == sorted(
        vector["values"]["active_power_import"] for vector in vectors
    )
    assert {row["meter_id"] for row in rows} == {vector["values"]["meter_id"] for vector in vectors}
