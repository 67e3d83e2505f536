"""The web API and /metrics against the corpus values; the history: energy per hour, bounds, SQLite file."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List

import aiohttp
import pytest
from _support import corpus_frames
from prometheus_client.parser import text_string_to_metric_families

from amshan.obis_map import FIELD_UNITS
from amshan.web import History, HistoryError, HistoryFile, MeterHub, create_app, start_server
from amshan.web.metrics import metric_name

# The Norwegian lists of the three meters amshan has decoded since 2021: each vector states its values.
NORWEGIAN = [
    v
    for v in corpus_frames(layer="hdlc", valid=True, country="NO")
    if v["values"] and not v["encrypted"] and v["meter"] in ("aidon", "kaifa", "kamstrup")
]
TEXT_FIELDS = ("list_ver_id", "meter_id", "meter_type", "meter_manufacturer")


class Clock:
    """A settable clock for the hub, so live times are known to the test."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def frame_bytes(vector: Dict[str, Any]) -> bytes:
    """Return the stream of a vector: its frames in order, or its bytes."""
    return (
        b"".join(bytes.fromhex(h) for h in vector["frames"])
        if vector["frames"]
        else bytes.fromhex(vector["hex"])
    )


def assert_stated_values(vector: Dict[str, Any], shown: Dict[str, Any]) -> None:
    """Every value the corpus states for a vector is what the API shows (clock compared as an instant)."""
    for name, expected in vector["values"].items():
        assert name in shown, f"{vector['id']}: {name} missing"
        if name == "meter_datetime":
            assert datetime.fromisoformat(shown[name]) == datetime.fromisoformat(expected), vector["id"]
        elif isinstance(expected, str):
            assert shown[name] == expected, f"{vector['id']}: {name}"
        else:
            # rel 1e-7: the corpus states one Aidon register as 109552248 Wh where its bytes say 10955225 * 10
            assert shown[name] == pytest.approx(expected, rel=1e-7), f"{vector['id']}: {name}"


class Server:
    """A hub served by the real aiohttp stack on an ephemeral loopback port, with a client session."""

    def __init__(self, hub: MeterHub, session: aiohttp.ClientSession, base: str) -> None:
        self.hub, self.session, self.base = hub, session, base

    async def get(self, path: str, status: int = 200) -> Any:
        async with self.session.get(self.base + path) as response:
            assert response.status == status, await response.text()
            return await response.json() if status == 200 else await response.text()

    async def text(self, path: str) -> str:
        async with self.session.get(self.base + path) as response:
            assert response.status == 200
            return await response.text()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    hub = MeterHub(History(), live=True, source="tcp://127.0.0.1:1", clock=Clock())
    runner, port = await start_server(create_app(hub), "127.0.0.1", 0)
    async with aiohttp.ClientSession() as session:
        yield Server(hub, session, f"http://127.0.0.1:{port}")
    await runner.cleanup()


def test_corpus_has_norwegian_lists() -> None:
    assert len(NORWEGIAN) >= 30
    assert {v["meter"] for v in NORWEGIAN} == {"aidon", "kaifa", "kamstrup"}


async def test_latest_shows_every_corpus_value(server: Server) -> None:
    for vector in NORWEGIAN:
        assert server.hub.feed(frame_bytes(vector)) == 1, vector["id"]
        latest = await server.get("/api/latest")
        meter = next(m for m in latest["meters"] if m["t"] == max(x["t"] for x in latest["meters"]))
        assert_stated_values(vector, meter["dictionary"])
        assert_stated_values(vector, meter["values"])
        server.hub._clock.now += 1  # type: ignore[attr-defined]


async def test_metrics_show_every_corpus_value(server: Server) -> None:
    for vector in NORWEGIAN:
        hub = server.hub
        hub.history.meters.clear()  # one meter per scrape: the vector's own
        hub.feed(frame_bytes(vector))
        families = {f.name: f for f in text_string_to_metric_families(await server.text("/metrics"))}
        for name, expected in vector["values"].items():
            if name in TEXT_FIELDS or name == "meter_datetime" or not isinstance(expected, (int, float)):
                continue
            family = families[metric_name(name).removesuffix("_total")]
            cumulative = FIELD_UNITS.get(name) in ("Wh", "varh")
            assert family.type == ("counter" if cumulative else "gauge"), name
            (sample,) = [s for s in family.samples if not s.name.endswith("_created")]
            assert sample.value == pytest.approx(expected), f"{vector['id']}: {name}"
            assert sample.labels["manufacturer"] == vector["values"].get(
                "meter_manufacturer", sample.labels["manufacturer"]
            )
            if "meter_id" in vector["values"]:
                assert sample.labels["meter_id"] == vector["values"]["meter_id"]
    counters = {
        f.name: f.samples[0].value
        for f in families.values()
        if f.type == "counter" and not f.samples[0].labels
    }
    assert counters["amshan_frames"] >= len(NORWEGIAN)
    assert counters["amshan_decoded_messages"] == len(NORWEGIAN)
    assert counters["amshan_invalid_frames"] == 0
    assert counters["amshan_reconnects"] == 0


async def test_metrics_count_invalid_frames_and_parse(server: Server) -> None:
    server.hub.feed(bytes(range(256)) * 8 + b"\x7e\xa0\x10garbage\x7e")
    server.hub.feed(frame_bytes(NORWEGIAN[0]))
    text = await server.text("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["amshan_invalid_frames"].samples[0].value > 0
    assert families["amshan_decoded_messages"].samples[0].value == 1
    assert families["amshan_meter_info"].samples[0].value == 1


async def test_history_health_and_errors(server: Server) -> None:
    named = [v for v in NORWEGIAN if v["meter"] == "kamstrup" and "meter_id" in v["values"]]
    meter = max({v["values"]["meter_id"] for v in named}, key=[v["values"]["meter_id"] for v in named].count)
    mine = [v for v in named if v["values"]["meter_id"] == meter]
    assert len(mine) >= 3
    clock: Clock = server.hub._clock  # type: ignore[assignment]
    start = clock.now
    for vector in mine:
        server.hub.feed(frame_bytes(vector))
        clock.now += 10
    series = await server.get(f"/api/history?meter={meter}&field=active_power_import")
    assert series["unit"] == "W"
    assert [p[1] for p in series["points"]] == [v["values"]["active_power_import"] for v in mine]
    since = await server.get(f"/api/history?meter={meter}&field=active_power_import&since={start + 15}")
    assert all(t >= start + 15 for t, _ in since["points"]) and len(since["points"]) < len(series["points"])
    health = await server.get("/api/health")
    assert health["status"] == "ok" and health["live"] and health["decoded"] == len(mine)
    assert health["last_message_age"] == pytest.approx(10)
    assert "since" in await server.get("/api/history?field=active_power_import&since=bad", status=400)
    await server.get("/api/history", status=400)
    await server.get("/api/history?field=active_power_import&meter=nobody", status=404)
    await server.get("/api/nothing", status=404)
    async with server.session.post(server.base + "/api/latest") as response:
        assert response.status == 405  # read-only


async def test_page_and_static_files_are_served(server: Server) -> None:
    page = await server.text("/")
    assert "static/uPlot.iife.min.js" in page and "static/app.js" in page
    for name in ("uPlot.iife.min.js", "uPlot.min.css", "app.js", "app.css", "uPlot.LICENSE.txt"):
        assert len(await server.text("/static/" + name)) > 100
    async with server.session.get(server.base + "/static/../history.py") as response:
        assert response.status == 404
    async with server.session.get(server.base + "/") as response:
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]


async def test_events_stream_each_message(server: Server) -> None:
    async with server.session.get(server.base + "/api/events") as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        assert await response.content.readline() == b"retry: 1000\n"
        await response.content.readline()
        for vector in NORWEGIAN[:5]:
            server.hub.feed(frame_bytes(vector))
            lines = [await response.content.readline() for _ in range(4)]
            event = json.loads(lines[2].removeprefix(b"data: "))
            assert_stated_values(vector, event["dictionary"])
            assert lines[0] == f"id: {event['seq']}\n".encode()


def kamstrup_hourly(register_wh: float, power_w: float) -> Dict[str, Any]:
    """A Kamstrup list 2 style dictionary with the cumulative import register."""
    return {
        "meter_manufacturer": "Kamstrup",
        "meter_id": "5706567274389702",
        "active_power_import": power_w,
        "active_power_import_hour": register_wh,
    }


def test_energy_per_hour_from_registers_and_from_power() -> None:
    history = History()
    hour = 1_700_000_000 // 3600 * 3600
    # hourly registers at hh:00:05 (as Kamstrup, Aidon send them): an hour is the next reading minus its own
    for index, register in enumerate([1_000_000, 1_001_500, 1_003_700]):
        history.add(kamstrup_hourly(register, 2000), hour + index * 3600 + 5)
    state = history.meter()
    assert state is not None
    energy = dict(state.energy("energy_import"))
    assert energy[hour] == 1500 and energy[hour + 3600] == 2200
    assert energy[hour + 7200] == 0  # the current hour: nothing integrated yet
    # a meter without registers: power integrated over time, split at the hour boundary
    for offset, watts in [(3000, 3600), (3300, 7200), (3500, 1800), (3800, 0)]:
        history.add({"meter_manufacturer": "Aidon", "active_power_import": watts}, hour + offset)
    aidon = dict(history.meters["Aidon"].energy("energy_import"))
    # 3600 W for 300 s, 7200 W for 200 s, 1800 W for 100 s
    assert aidon[hour] == pytest.approx(300 + 400 + 50)
    assert aidon[hour + 3600] == pytest.approx(100)  # 1800 W for 200 s after the hour
    # an outage longer than MAX_GAP adds nothing
    history.add({"meter_manufacturer": "Aidon", "active_power_import": 9000}, hour + 3800 + 4000)
    assert dict(history.meters["Aidon"].energy("energy_import"))[hour + 3600] == pytest.approx(100)


def test_short_lists_join_their_meter_once_its_id_arrives() -> None:
    history = History()
    history.add({"meter_manufacturer": "Aidon", "active_power_import": 100}, 1.0)
    assert list(history.meters) == ["Aidon"]
    history.add({"meter_manufacturer": "Aidon", "meter_id": "7359992890941742", "voltage_l1": 230.0}, 2.0)
    history.add({"meter_manufacturer": "Aidon", "active_power_import": 200}, 3.0)
    assert list(history.meters) == ["7359992890941742"]
    state = history.meters["7359992890941742"]
    assert [v["active_power_import"] for _, v in state.samples if "active_power_import" in v] == [100, 200]
    assert state.phases == 1


def test_history_is_bounded() -> None:
    history = History(window=100.0, max_samples=50, energy_hours=3, max_meters=2)
    for second in range(20_000):
        history.add({"meter_manufacturer": "Kaifa", "active_power_import": second}, float(second))
    state = history.meters["Kaifa"]
    assert len(state.samples) == 50 and state.samples[0][0] == 19_950
    assert len(state.hours) <= 5
    for name in ("A", "B", "C"):
        history.add({"meter_manufacturer": name, "active_power_import": 1}, 30_000.0)
    assert list(history.meters) == ["B", "C"]


def test_recording_uses_the_meter_clock() -> None:
    hub = MeterHub(History(window=None), live=False, clock=Clock())
    stamped = [v for v in NORWEGIAN if "meter_datetime" in v["values"]]
    for vector in stamped[:3]:
        hub.feed(frame_bytes(vector))
    times = sorted(t for state in hub.history.meters.values() for t, _ in state.samples)
    expected = sorted(datetime.fromisoformat(v["values"]["meter_datetime"]).timestamp() for v in stamped[:3])
    assert times == pytest.approx(expected)


def fill(history_file: HistoryFile, count: int, start: float) -> List[float]:
    """Add a Kamstrup list per 10 s; return the powers added."""
    powers = []
    for index in range(count):
        power = 1000.0 + index
        history_file.add(kamstrup_hourly(5_000_000 + index * 10, power), start + index * 10)
        powers.append(power)
    return powers


def test_history_file_keeps_series_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    start = 1_700_000_000.0
    first = HistoryFile(path, History())
    powers = fill(first, 30, start)
    first.flush()
    powers += fill(first, 10, start + 300)
    first.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    again = HistoryFile(path, History())
    state = again.history.meter()
    assert state is not None
    assert [v for _, v in state.series("active_power_import")] == powers
    assert state.energy("energy_import") and state.values["meter_id"] == "5706567274389702"
    again.close()


def test_history_file_keeps_only_the_window(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    first = HistoryFile(path, History(window=60.0, energy_hours=1))
    fill(first, 10, 0.0)
    fill(first, 10, 100_000.0)
    first.close()
    db = sqlite3.connect(path)
    oldest = db.execute("SELECT min(t) FROM messages").fetchone()[0]
    db.close()
    assert oldest >= 100_000.0 - 3 * 3600


@pytest.mark.parametrize(
    "content",
    [b"this is not a database at all" * 200, b"SQLite format 3\x00" + bytes(4080), b"\x00" * 4096],
)
def test_a_corrupt_history_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "history.sqlite"
    path.write_bytes(content)
    with pytest.raises(HistoryError, match="corrupt or not an amshan history"):
        HistoryFile(path, History())


def test_a_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(HistoryError, match="not an amshan history"):
        HistoryFile(path, History())


def test_a_history_file_in_use_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    holder = HistoryFile(path, History())
    try:
        with pytest.raises(HistoryError, match="in use by another process"):
            HistoryFile(path, History())
    finally:
        holder.close()
    HistoryFile(path, History()).close()  # free again once the first one closed


def test_an_unreachable_history_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="history file"):
        HistoryFile(tmp_path / "missing-folder" / "history.sqlite", History())


def test_values_are_finite_numbers_only() -> None:
    history = History()
    history.add({"meter_manufacturer": "Kaifa", "active_power_import": math.inf, "current_l1": 1.5}, 1.0)
    state = history.meters["Kaifa"]
    assert state.samples[-1][1] == {"current_l1": 1.5}


async def test_event_streams_beyond_the_limit_are_refused(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("amshan.web.hub.MAX_CLIENTS", 2)
    first = await server.session.get(server.base + "/api/events")
    second = await server.session.get(server.base + "/api/events")
    try:
        assert first.status == second.status == 200
        async with server.session.get(server.base + "/api/events") as third:
            assert third.status == 503
        assert (await server.get("/api/health"))["event_clients"] == 2
    finally:
        first.close()
        second.close()
