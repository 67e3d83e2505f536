"""`amshan serve` and `amshan demo --serve`: history across restarts, bad history files, binding, metrics."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from _processes import is_listening, wait_until
from _web import ServeProcess, ThreadedSimulator, decoded
from prometheus_client.parser import text_string_to_metric_families

from amshan.simulator import bundled_frames

KAMSTRUP = bundled_frames("kamstrup")
METER = "5706567202753025"


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def power_series(server: ServeProcess) -> list[list[float]]:
    """Return the Kamstrup's power series, empty while it has not been heard (404)."""
    try:
        return get(f"{server.url}api/history?meter={METER}&field=active_power_import")["points"]  # type: ignore[no-any-return]
    except urllib.error.HTTPError as error:
        if error.code != 404:
            raise
        return []


@pytest.fixture
def kamstrup() -> Any:
    simulator = ThreadedSimulator(KAMSTRUP, 0.05).start()
    yield simulator
    simulator.stop()


def test_history_file_keeps_the_series_across_a_restart(tmp_path: Path, kamstrup: ThreadedSimulator) -> None:
    history = tmp_path / "history.sqlite"
    server = ServeProcess(tmp_path)
    try:
        server.start(kamstrup.address, "--history", str(history))
        wait_until(lambda: len(power_series(server)) >= 40, "40 messages", timeout=30)
        server.stop()
        kept = power_series(server.start(kamstrup.address, "--history", str(history)))
        assert len(kept) >= 40
        powers = [d["active_power_import"] for d in decoded(KAMSTRUP)]
        assert [p for _, p in kept[: len(powers)]] == powers  # the first replay, in order
        wait_until(lambda: len(power_series(server)) > len(kept), "new messages after the old", timeout=30)
    finally:
        server.stop()


def serve_fails(*arguments: str) -> subprocess.CompletedProcess[str]:
    """Run `amshan serve` that is expected to stop by itself (killed if it overruns)."""
    argv = [sys.executable, "-m", "amshan", "serve", *arguments]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False
    )


def test_a_corrupt_history_file_is_reported(tmp_path: Path) -> None:
    history = tmp_path / "history.sqlite"
    history.write_bytes(b"SQLite format 3\x00" + b"\xff" * 8000)
    capture = tmp_path / "capture.bin"
    capture.write_bytes(b"".join(KAMSTRUP))
    result = serve_fails(str(capture), "--history", str(history), "--port", "0")
    assert result.returncode == 1
    assert "corrupt or not an amshan history" in result.stderr and "Traceback" not in result.stderr
    assert str(history) in result.stderr


def test_a_history_file_in_use_is_reported(tmp_path: Path, kamstrup: ThreadedSimulator) -> None:
    history = tmp_path / "history.sqlite"
    server = ServeProcess(tmp_path)
    try:
        server.start(kamstrup.address, "--history", str(history))
        result = serve_fails(kamstrup.address, "--history", str(history), "--port", "0")
        assert result.returncode == 1
        assert "in use by another process" in result.stderr and "Traceback" not in result.stderr
        assert server.process is not None and server.process.running()
    finally:
        server.stop()


def test_serves_loopback_only_by_default_and_is_read_only(
    tmp_path: Path, kamstrup: ThreadedSimulator
) -> None:
    server = ServeProcess(tmp_path).start(kamstrup.address)
    try:
        assert is_listening(server.port)  # 127.0.0.1, from /proc/net/tcp
        with open("/proc/net/tcp", encoding="ascii") as table:
            mine = [line.split()[1] for line in table if line.split()[1].endswith(f":{server.port:04X}")]
        assert mine == [f"0100007F:{server.port:04X}"]
        request = urllib.request.Request(server.url + "api/latest", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 405
        wait_until(lambda: bool(get(server.url + "api/latest")["meters"]), "a message", timeout=30)
        with urllib.request.urlopen(server.url + "metrics", timeout=10) as response:
            families = {f.name for f in text_string_to_metric_families(response.read().decode())}
        assert {"amshan_active_power_import_watts", "amshan_frames", "amshan_reconnects"} <= families
        health = get(server.url + "api/health")
        assert health["connected"] and health["status"] == "ok" and health["reconnects"] == 0
    finally:
        server.stop()


def test_health_counts_reconnects(tmp_path: Path) -> None:
    meter = ThreadedSimulator(KAMSTRUP, 0.05).start()
    server = ServeProcess(tmp_path).start(meter.address)
    try:
        wait_until(lambda: get(server.url + "api/health")["decoded"] > 0, "a message", timeout=30)
        meter.stop()  # the meter's link goes down...
        wait_until(lambda: not get(server.url + "api/health")["connected"], "the loss to show", timeout=30)
        meter = ThreadedSimulator(KAMSTRUP, 0.05, port=meter.port).start()  # ...and comes back
        wait_until(lambda: get(server.url + "api/health")["reconnects"] == 1, "a reconnect", timeout=60)
        health = get(server.url + "api/health")
        assert health["connected"] and health["invalid_frames"] == 0
    finally:
        server.stop()
        meter.stop()


def test_demo_serve_shows_the_simulated_meters(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path, name="demo")
    server.start_command(
        [sys.executable, "-m", "amshan", "demo", "--serve", "--port", "0", "--interval", "0.05"]
    )
    try:
        wait_until(lambda: len(get(server.url + "api/latest")["meters"]) >= 3, "three meters", timeout=30)
        makers = {m["info"]["meter_manufacturer"] for m in get(server.url + "api/latest")["meters"]}
        assert {"Aidon", "Kaifa", "Kamstrup"} <= makers
    finally:
        server.stop()


@pytest.mark.parametrize("meter", ["dk", "at"])
def test_demo_serve_of_a_ciphered_meter_decrypts_with_its_public_keys(tmp_path: Path, meter: str) -> None:
    server = ServeProcess(tmp_path, name=f"demo-{meter}")
    command = ["demo", "--serve", "--meter", meter, "--port", "0", "--interval", "0.05"]
    server.start_command([sys.executable, "-m", "amshan", *command])
    try:
        wait_until(lambda: get(server.url + "api/health")["decoded"] >= 3, "three messages", timeout=30)
        health = get(server.url + "api/health")
        assert health["undecodable"] == 0 and health["invalid_frames"] == 0
        assert "active_power_import" in get(server.url + "api/latest")["meters"][0]["values"]
    finally:
        server.stop()
