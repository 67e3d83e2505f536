"""InfluxDB forwarding against a real influxd: line protocol, batching, outages, restarts and the CLI."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from _processes import wait_until
from _support import corpus_frames, require_tool

from amshan.influxdb import InfluxDbWriter, Point, PointMaker, message_to_point
from amshan.reader import MeterReader
from amshan.simulator import MeterSimulator, bundled_frames

DATABASE = "meter"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class InfluxServer:
    """A real influxd in a temporary folder, on loopback ports, that a test can stop and start again."""

    def __init__(self, executable: str, folder: Path, *, auth: bool = False) -> None:
        self.executable = executable
        self.credentials: tuple[str, str] | None = None
        self.folder = folder
        self.http_port = free_port()
        self.rpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.config = folder / "influxdb.conf"
        self.config.write_text(
            f"""reporting-enabled = false
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{folder}/meta"
[data]
  dir = "{folder}/data"
  wal-dir = "{folder}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.http_port}"
  log-enabled = false
  auth-enabled = {"true" if auth else "false"}
[logging]
  level = "warn"
""",
            encoding="utf-8",
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.executable, "run", "-config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "influxd.log", "ab"),  # noqa: SIM115 - closed with the process
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.folder / "influxd.log").read_text()
            try:
                if self.request("GET", "/ping")[0] == 204:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise TimeoutError("influxd did not answer /ping within 20 s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        headers = {}
        if self.credentials is not None:
            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read().decode("utf-8")
        finally:
            connection.close()

    def command(self, statement: str) -> None:
        status, text = self.request("POST", "/query?" + urllib.parse.urlencode({"q": statement}))
        assert status == 200 and "error" not in text, text

    def query(self, statement: str, database: str = DATABASE) -> list[dict[str, Any]]:
        """Return the rows of every series a SELECT gives, each row a dict that includes the series' tags."""
        params = urllib.parse.urlencode({"db": database, "q": statement, "epoch": "ns"})
        status, text = self.request("GET", "/query?" + params)
        assert status == 200, text
        result = json.loads(text)["results"][0]
        assert "error" not in result, result
        rows = []
        for series in result.get("series", []):
            for values in series["values"]:
                row = dict(zip(series["columns"], values))
                row.update(series.get("tags", {}))
                rows.append(row)
        return rows


@pytest.fixture
def influxd(tmp_path: Path) -> Iterator[InfluxServer]:
    server = InfluxServer(require_tool("influxd"), tmp_path)
    server.start()
    try:
        server.command(f"CREATE DATABASE {DATABASE}")
        yield server
    finally:
        server.stop()


# --- line protocol (rules from the InfluxDB 1.x line protocol reference) ---------------------------------


def test_line_protocol_escapes_and_float_fields() -> None:
    tags = {"meter_id": "a,b=c d", "manufacturer": "Kaifa"}
    point = Point("my meter", tags, {"power x": 5, "v": 230.5}, 17)
    assert point.to_line() == "my\\ meter,manufacturer=Kaifa,meter_id=a\\,b\\=c\\ d power\\ x=5.0,v=230.5 17"


def test_empty_tag_values_are_left_out() -> None:
    assert Point("m", {"meter_id": ""}, {"f": 1.0}, 1).to_line() == "m f=1.0 1"


def test_message_to_point_uses_the_meter_clock_and_numeric_values() -> None:
    # Kamstrup sends deviation -60 (spec: UTC offset = minus the deviation): 2021-11-25 23:00:55+01:00.
    meter_time = datetime(2021, 11, 25, 23, 0, 55, tzinfo=timezone(timedelta(hours=1)))
    message = {
        "meter_id": "5706567202753025",
        "meter_manufacturer": "Kamstrup",
        "meter_datetime": meter_time,
        "list_ver_id": "Kamstrup_V0001",
        "active_power_import": 1247,
        "voltage_l1": 236,
        "current_l1": 1.89,
    }
    point = message_to_point(message, received_ns=1)
    assert point is not None
    assert point.timestamp_ns == 1637877655 * 10**9  # 2021-11-25T22:00:55Z
    assert point.tags == {"meter_id": "5706567202753025", "manufacturer": "Kamstrup"}
    assert point.fields == {"active_power_import": 1247.0, "voltage_l1": 236.0, "current_l1": 1.89}
    assert message_to_point(message, received_ns=7, use_meter_time=False).timestamp_ns == 7  # type: ignore[union-attr]


def test_message_without_numbers_gives_no_point() -> None:
    assert message_to_point({"meter_id": "1", "list_ver_id": "x"}, received_ns=1) is None


def test_point_maker_carries_the_meter_id_to_short_lists() -> None:
    maker = PointMaker()
    before = time.time_ns()
    maker.make({"meter_manufacturer": "Aidon", "meter_id": "7359992890497997", "active_power_import": 1})
    short = maker.make({"meter_manufacturer": "Aidon", "active_power_import": 733})
    assert short is not None
    assert short.tags == {"meter_id": "7359992890497997", "manufacturer": "Aidon"}
    assert before <= short.timestamp_ns <= time.time_ns()


# --- the writer against a real influxd ---------------------------------------------------------------------


def make_points(count: int, start_ns: int = 1_600_000_000 * 10**9) -> list[Point]:
    return [
        Point("amshan", {"meter_id": "m1"}, {"active_power_import": float(i)}, start_ns + i * 10**9)
        for i in range(count)
    ]


def stored_values(server: InfluxServer) -> list[float]:
    rows = server.query("SELECT active_power_import FROM amshan")
    return sorted(row["active_power_import"] for row in rows)


async def test_writer_batches_points_that_read_back(influxd: InfluxServer) -> None:
    writer = InfluxDbWriter(influxd.url, DATABASE, batch_size=7, flush_interval=0.2)
    task = asyncio.ensure_future(writer.run())
    for point in make_points(50):
        writer.add(point)
    writer.stop()
    await asyncio.wait_for(task, 30)
    assert (writer.written, writer.pending, writer.dropped, writer.rejected) == (50, 0, 0, 0)
    assert stored_values(influxd) == [float(i) for i in range(50)]
    rows = influxd.query("SELECT * FROM amshan WHERE active_power_import = 3")
    assert rows[0]["time"] == 1_600_000_003 * 10**9 and rows[0]["meter_id"] == "m1"


async def test_tricky_tags_survive_the_round_trip(influxd: InfluxServer) -> None:
    writer = InfluxDbWriter(influxd.url, DATABASE, flush_interval=0.1)
    task = asyncio.ensure_future(writer.run())
    tags = {"meter_id": "a,b=c d", "manufacturer": "x y"}
    writer.add(Point("amshan", tags, {"active_power_import": 1.5}, 5))
    writer.stop()
    await asyncio.wait_for(task, 30)
    [row] = influxd.query("SELECT * FROM amshan")
    assert (row["meter_id"], row["manufacturer"], row["active_power_import"]) == ("a,b=c d", "x y", 1.5)


async def test_server_stopped_mid_run_and_restarted_loses_nothing(influxd: InfluxServer) -> None:
    writer = InfluxDbWriter(influxd.url, DATABASE, batch_size=10, flush_interval=0.05, max_back_off=0.5)
    task = asyncio.ensure_future(writer.run())
    points = make_points(300)
    loop = asyncio.get_running_loop()
    for index, point in enumerate(points):
        writer.add(point)
        if index == 100:
            written_before = writer.written
            await loop.run_in_executor(None, influxd.stop)
            down_at = loop.time()
        if index == 200:  # still down: the writer keeps failing and buffering (polled, not slept)
            deadline = loop.time() + 30
            while writer.failed_writes < 2:
                assert loop.time() < deadline, f"{writer.failed_writes} failed writes in 30 s while down"
                await asyncio.sleep(0.05)
            failures_while_down = writer.failed_writes
            pending_while_down = writer.pending
            await loop.run_in_executor(None, influxd.start)
            up_at = loop.time()
        await asyncio.sleep(0.01)
    writer.stop()
    await asyncio.wait_for(task, 30)
    print(
        f"influxd down {up_at - down_at:.1f} s; written before the stop {written_before}; "
        f"failed writes while down {failures_while_down}; points buffered while down {pending_while_down}; "
        f"written in total {writer.written}"
    )
    assert written_before > 0
    assert failures_while_down >= 2
    assert pending_while_down >= 100
    assert (writer.pending, writer.dropped, writer.rejected) == (0, 0, 0)
    assert stored_values(influxd) == [float(i) for i in range(300)]  # each point exactly once


async def test_full_buffer_drops_the_oldest_and_counts_them(influxd: InfluxServer) -> None:
    influxd.stop()
    writer = InfluxDbWriter(influxd.url, DATABASE, batch_size=10, max_buffer=40, flush_interval=0.05)
    task = asyncio.ensure_future(writer.run())
    for point in make_points(100):
        writer.add(point)
    deadline = time.monotonic() + 10
    while writer.failed_writes < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert writer.failed_writes >= 2, "the writer never tried the stopped database"
    assert (writer.pending, writer.dropped) == (40, 60)  # the newest 40 kept, 60 dropped
    influxd.start()
    writer.stop()
    await asyncio.wait_for(task, 30)
    assert stored_values(influxd) == [float(i) for i in range(60, 100)]


async def test_missing_database_is_retried_until_it_exists(influxd: InfluxServer) -> None:
    writer = InfluxDbWriter(influxd.url, "later", flush_interval=0.05, max_back_off=0.2)
    task = asyncio.ensure_future(writer.run())
    for point in make_points(5):
        writer.add(point)
    deadline = time.monotonic() + 10
    while writer.failed_writes < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert writer.failed_writes >= 2 and writer.pending == 5
    influxd.command("CREATE DATABASE later")
    writer.stop()
    await asyncio.wait_for(task, 30)
    rows = influxd.query("SELECT active_power_import FROM amshan", database="later")
    assert sorted(row["active_power_import"] for row in rows) == [0.0, 1.0, 2.0, 3.0, 4.0]


async def test_rejected_points_are_dropped_and_the_run_goes_on(influxd: InfluxServer) -> None:
    # An integer field written by someone else makes InfluxDB refuse our float field in the same shard (400).
    status, text = influxd.request("POST", f"/write?db={DATABASE}", b"amshan active_power_import=1i 1")
    assert status == 204, text
    writer = InfluxDbWriter(influxd.url, DATABASE, flush_interval=0.05)
    task = asyncio.ensure_future(writer.run())
    writer.add(make_points(1, start_ns=2)[0])
    deadline = time.monotonic() + 10
    while writer.rejected == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    writer.add(Point("other", {}, {"active_power_import": 2.0}, 2))
    writer.stop()
    await asyncio.wait_for(task, 30)
    assert (writer.rejected, writer.written, writer.pending) == (1, 1, 0)
    assert influxd.query("SELECT active_power_import FROM other")[0]["active_power_import"] == 2.0


def test_bad_url_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        InfluxDbWriter("localhost:8086", DATABASE)


# --- the command line: amshan forward-influxdb and amshan read --influxdb ----------------------------------

AMSHAN = Path(sys.executable).with_name("amshan")
FAST_FLUSH = ("--flush-interval", "0.1", "-v")


def checked_vectors() -> list[dict[str, Any]]:
    """Norwegian Kaifa and Kamstrup lists that carry the meter's clock and independently checked values."""
    prefixes = ("no-kamstrup-list1-em001", "no-kamstrup-list2-em001", "no-kaifa-list2-gh")
    return [
        vector
        for vector in corpus_frames(layer="hdlc", valid=True, country="NO", values_checked=True)
        if vector["id"].startswith(prefixes)
    ]


def assert_stored_values(rows: list[dict[str, Any]], vectors: list[dict[str, Any]]) -> None:
    """Every numeric value the corpus states is stored once, under the meter's id and manufacturer."""
    assert len(rows) == len(vectors)
    stated_ids = sorted(vector["values"]["meter_id"] for vector in vectors)
    assert sorted(row["meter_id"] for row in rows) == stated_ids
    assert {row["manufacturer"] for row in rows} == {vector["meter"].capitalize() for vector in vectors}
    for key in {key for vector in vectors for key, value in vector["values"].items() if key != "meter_id"}:
        stating = [vector for vector in vectors if key in vector["values"]]
        meters = {vector["values"]["meter_id"] for vector in stating}
        stored = [row[key] for row in rows if row["meter_id"] in meters and row[key] is not None]
        assert sorted(stored) == pytest.approx(sorted(vector["values"][key] for vector in stating)), key


def test_forward_a_capture_file_and_read_it_back(influxd: InfluxServer, tmp_path: Path) -> None:
    vectors = checked_vectors()
    assert len(vectors) >= 10
    capture = tmp_path / "capture.bin"
    capture.write_bytes(b"".join(bytes.fromhex(vector["hex"]) for vector in vectors))
    result = subprocess.run(
        [str(AMSHAN), "forward-influxdb", str(capture), influxd.url, DATABASE, "-v"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TZ": "UTC"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"{len(vectors)} points written" in result.stderr
    assert result.stdout == ""
    assert_stored_values(influxd.query("SELECT * FROM amshan"), vectors)
    # Kaifa gh180-2 sends 07E6-01-02 14:37:20, deviation 0x8000 (local time; TZ=UTC here): the point's time.
    [row] = influxd.query("SELECT * FROM amshan WHERE meter_id = '6970631403275928'")
    assert row["time"] == 1641134240 * 10**9


def test_read_prints_and_forwards_at_once(influxd: InfluxServer) -> None:
    vectors = checked_vectors()[:3]
    result = subprocess.run(
        [str(AMSHAN), "read", "-", "--influxdb", influxd.url, "--database", DATABASE],
        input=b"".join(bytes.fromhex(vector["hex"]) for vector in vectors),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3
    assert_stored_values(influxd.query("SELECT * FROM amshan"), vectors)


def test_forwarder_survives_influxd_stopped_mid_run_and_restarted(
    influxd: InfluxServer, tmp_path: Path
) -> None:
    vectors = checked_vectors() * 3  # with --receive-time each message is its own point
    log = tmp_path / "forwarder.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [str(AMSHAN), "forward-influxdb", "-", influxd.url, DATABASE, *FAST_FLUSH, "--receive-time"],
            stdin=subprocess.PIPE,
            stderr=log_file,
            stdout=subprocess.DEVNULL,
        )
    assert process.stdin is not None

    def stored() -> int:
        return len(influxd.query("SELECT * FROM amshan"))

    try:
        stop_at, restart_at = len(vectors) // 3, 2 * len(vectors) // 3
        for index, vector in enumerate(vectors):
            if index == stop_at:  # the first third reaches the database (polled: no fixed sleep under load)
                wait_until(lambda: stored() >= stop_at, f"{stop_at} points stored", timeout=60, poll=0.1)
                written_before = stored()
                influxd.stop()
                stopped = time.monotonic()
            if index == restart_at:  # writes fail and back off while it is down
                wait_until(lambda: "InfluxDB write failed" in log.read_text(), "a failed write", 60, 0.1)
                influxd.start()
                down = time.monotonic() - stopped
            process.stdin.write(bytes.fromhex(vector["hex"]))
            process.stdin.flush()
            time.sleep(0.05)
        process.stdin.close()
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    text = log.read_text()
    assert process.returncode == 0, text
    assert written_before == stop_at
    assert "InfluxDB write failed" in text
    assert f"{len(vectors)} points written" in text
    assert_stored_values(influxd.query("SELECT * FROM amshan"), vectors)
    print(
        f"forwarder: {len(vectors)} messages, {written_before} stored before influxd stopped, influxd"
        f" down {down:.1f} s while {restart_at - stop_at} messages arrived; {len(vectors)} stored in the end"
    )


async def test_sigterm_stops_reading_and_writes_every_printed_message(influxd: InfluxServer) -> None:
    frames = [bytes.fromhex(vector["hex"]) for vector in checked_vectors()]
    async with MeterSimulator(frames, interval=0.02) as simulator:
        process = await asyncio.create_subprocess_exec(
            str(AMSHAN),
            "read",
            f"tcp://127.0.0.1:{simulator.port}",
            "--influxdb",
            influxd.url,
            "--database",
            DATABASE,
            "--receive-time",
            "--flush-interval",
            "30",  # nothing is written before the signal: the drain must do it
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        try:
            printed = [await asyncio.wait_for(process.stdout.readline(), 30) for _ in range(25)]
            process.send_signal(signal.SIGTERM)
            rest, stderr = await asyncio.wait_for(process.communicate(), 60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0, stderr.decode()
    messages = [json.loads(line) for line in printed + rest.splitlines()]
    rows = influxd.query("SELECT * FROM amshan")
    assert len(rows) == len(messages) >= 25
    stored = sorted(row["active_power_import"] for row in rows)
    assert stored == sorted(message["active_power_import"] for message in messages)


def test_username_and_password_and_exit_status_1_when_points_stay_unwritten(tmp_path: Path) -> None:
    server = InfluxServer(require_tool("influxd"), tmp_path, auth=True)
    server.start()
    try:
        server.command("CREATE USER admin WITH PASSWORD 's3cret' WITH ALL PRIVILEGES")  # the first needs none
        server.credentials = ("admin", "s3cret")
        server.command(f"CREATE DATABASE {DATABASE}")
        vectors = checked_vectors()[:3]
        capture = tmp_path / "capture.bin"
        capture.write_bytes(b"".join(bytes.fromhex(vector["hex"]) for vector in vectors))
        command = [str(AMSHAN), "forward-influxdb", str(capture), server.url, DATABASE]
        command += ["--drain-timeout", "1"]
        refused = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode == 1
        assert "0 points written, 3 not written" in refused.stderr and "HTTP 401" in refused.stderr
        accepted = subprocess.run(
            [*command, "--username", "admin"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "AMSHAN_INFLUXDB_PASSWORD": "s3cret"},
            check=False,
        )
        assert accepted.returncode == 0, accepted.stderr
        assert_stored_values(server.query("SELECT * FROM amshan"), vectors)
    finally:
        server.stop()


async def test_p1_telegrams_are_written_like_any_other_message(influxd: InfluxServer) -> None:
    """Real Swedish, Dutch and Belgian telegrams through MeterReader and the forwarder into a real influxd."""
    reader = MeterReader()
    messages = [m for telegram in bundled_frames("p1") for m in reader.read(telegram)]
    assert len(messages) == len(bundled_frames("p1"))
    writer = InfluxDbWriter(influxd.url, DATABASE, flush_interval=0.1)
    task = asyncio.ensure_future(writer.run())
    maker = PointMaker()
    for message in messages:
        point = maker.make(message)
        assert point is not None
        writer.add(point)
    writer.stop()
    await asyncio.wait_for(task, 30)
    assert (writer.written, writer.rejected) == (len(messages), 0)
    rows = {
        (row["time"], row["manufacturer"]): row for row in influxd.query("SELECT * FROM amshan GROUP BY *")
    }
    assert len(rows) == len(messages)
    for message in messages:
        when = message["meter_datetime"]
        assert isinstance(when, datetime)
        row = rows[int(when.astimezone().timestamp()) * 10**9, message["meter_manufacturer_id"]]
        numbers = {k: v for k, v in message.items() if isinstance(v, (int, float))}
        assert {k: row[k] for k in numbers} == {k: float(v) for k, v in numbers.items()}
    assert any("mbus_2_value" in m and "1.0.1.8.1.255" in m for m in messages)  # M-Bus and tariff fields
