"""`amshan serve` in a real headless Chromium: the page shows the decoded values, follows the meter, draws its
charts, survives a server restart, shows a one-phase meter's one phase and a recording's whole history."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List

import pytest
from _processes import wait_until
from _support import corpus_frames
from _web import (
    ServeProcess,
    ThreadedSimulator,
    console_errors,
    decoded,
    make_browser,
    merged,
    page_state,
    screenshot,
    series_pixels,
    shown_equals,
    synthetic_day,
)

from amshan.simulator import bundled_frames

LOAD_TIMEOUT = 30.0
# While the server is down the browser reports its failed reconnections; nothing else may be an error.
RESTART_NOISE = (r"api/events - Failed to load resource", r"api/events.*net::ERR_")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    driver = make_browser(tmp_path)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    server = ServeProcess(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def simulate(frames: List[bytes], interval: float) -> ThreadedSimulator:
    return ThreadedSimulator(frames, interval).start()


def wait_for_page(driver: Any, what: str, predicate: Any, timeout: float = LOAD_TIMEOUT) -> Dict[str, Any]:
    """Poll the page's state until predicate(state) holds; return that state."""
    seen: Dict[str, Any] = {}

    def check() -> bool:
        seen.update(page_state(driver))
        return bool(predicate(seen))

    try:
        wait_until(check, what, timeout=timeout)
    except TimeoutError as error:
        raise AssertionError(f"{error}; the page showed {seen}") from None
    return seen


def assert_live_values(driver: Any, dictionaries: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The values shown equal the decoded dictionaries folded up to the message the page last received."""
    state = wait_for_page(driver, "a live message", lambda s: s["ready"] and s["seq"] > 0)
    assert shown_equals(state["fields"], merged(dictionaries, state["seq"])) == []
    return state


def test_three_phase_kamstrup_live(tmp_path: Path, browser: Any, serve: ServeProcess) -> None:
    frames = bundled_frames("kamstrup")
    dictionaries = decoded(frames)
    assert len(dictionaries) == len(frames) and all("active_power_import" in d for d in dictionaries)
    simulator = simulate(frames, 0.2)
    try:
        serve.start(simulator.address)
        browser.get(serve.url)
        first = assert_live_values(browser, dictionaries)
        assert first["rows"] == ["phase-l1", "phase-l2", "phase-l3"] and first["phasesShown"]
        assert first["selected"] == "5706567202753025"
        for name in ("voltage_l1", "voltage_l3", "current_l2", "meter_id", "meter_type", "meter_datetime"):
            assert first["fields"][name]["value"] != "", name
        # the next message updates the page
        later = wait_for_page(browser, "the next message", lambda s: s["seq"] > first["seq"] + 1)
        assert shown_equals(later["fields"], merged(dictionaries, later["seq"])) == []
        # both charts are drawn: the series colour is on the canvas
        wait_until(lambda: series_pixels(browser, "power-chart") > 200, "the power line", timeout=10)
        wait_until(lambda: series_pixels(browser, "energy-chart") > 20, "an energy bar", timeout=10)
        assert later["powerTitle"] == "Power, last hour"
        wait_for_page(browser, "a minute's worth of messages", lambda s: s["seq"] >= 40)
        screenshot(browser, tmp_path, "three-phase-kamstrup", 1100)
        assert console_errors(browser) == []
    finally:
        simulator.stop()


def test_page_comes_back_after_a_server_restart(tmp_path: Path, browser: Any, serve: ServeProcess) -> None:
    frames = bundled_frames("kamstrup")
    dictionaries = decoded(frames)
    simulator = simulate(frames, 0.3)
    try:
        serve.start(simulator.address)
        browser.get(serve.url)
        before = assert_live_values(browser, dictionaries)
        port = serve.port
        serve.stop()
        wait_for_page(browser, "the page to notice", lambda s: s["link"] != "live", timeout=10)
        serve.start(simulator.address, port=port)
        after = wait_for_page(
            browser,
            "live values from the restarted server",
            lambda s: s["started"] != before["started"] and s["link"] == "live" and s["seq"] > 1,
        )
        assert shown_equals(after["fields"], merged(dictionaries, after["seq"])) == []
        assert browser.execute_script("return performance.getEntriesByType('navigation').length") == 1
        screenshot(browser, tmp_path, "after-restart", 1100)
        assert console_errors(browser, allowed=RESTART_NOISE) == []
    finally:
        simulator.stop()


def one_phase_aidon_frames() -> List[bytes]:
    """A one-phase Aidon 6515 (list 2: voltage and current of L1 only) and Aidon list 1 power readings."""
    list2 = [
        bytes.fromhex(v["hex"]) for v in corpus_frames(meter="aidon", valid=True, list="list2", model="6515")
    ]
    list1 = [
        bytes.fromhex(v["hex"])
        for v in corpus_frames(meter="aidon", valid=True, list="list1", layer="hdlc")
        if "active_power_import" in v["values"] and "meter_id" not in v["values"]
    ]
    assert list2 and list1
    return list2 + list1[:3]


def test_one_phase_aidon_shows_one_phase(tmp_path: Path, browser: Any, serve: ServeProcess) -> None:
    frames = one_phase_aidon_frames()
    dictionaries = decoded(frames)
    assert len(dictionaries) == len(frames)
    assert "voltage_l1" in dictionaries[0] and "voltage_l2" not in dictionaries[0]
    simulator = simulate(frames, 0.2)
    try:
        serve.start(simulator.address)
        browser.get(serve.url)
        state = assert_live_values(browser, dictionaries)
        assert state["rows"] == ["phase-l1"]
        assert state["fields"]["meter_type"]["value"] == "6515"
        wait_for_page(browser, "more power readings", lambda s: s["seq"] >= 30)
        wait_until(lambda: series_pixels(browser, "power-chart") > 100, "the power line", timeout=10)
        screenshot(browser, tmp_path, "one-phase-aidon", 420)
        assert console_errors(browser) == []
    finally:
        simulator.stop()


def test_a_capture_file_shows_its_whole_history(tmp_path: Path, browser: Any, serve: ServeProcess) -> None:
    frames = synthetic_day(datetime(2026, 3, 2, 6, 0), hours=30)
    capture = tmp_path / "capture.bin"
    capture.write_bytes(b"".join(frames))
    dictionaries = decoded(frames)
    serve.start(str(capture))
    browser.get(serve.url)
    state = wait_for_page(browser, "the recording", lambda s: s["ready"] and s["drawn"])
    assert shown_equals(state["fields"], merged(dictionaries, len(dictionaries))) == []
    assert state["powerTitle"] == "Power, whole recording"
    assert state["energyTitle"] == "Energy per hour, whole recording"
    points = browser.execute_script(
        "return [state.power.t.length, state.power.t[0], state.energy.size, [...state.energy.values()]]"
    )
    assert points[0] == len(dictionaries)
    assert points[1] == dictionaries[0]["meter_datetime"].timestamp()
    # 29 whole hours between 30 hourly register readings, and the last hour's integrated power
    registers = [d["active_power_import_hour"] for d in dictionaries if "active_power_import_hour" in d]
    assert points[2] == 30
    assert [round(e[0]) for e in points[3][:29]] == [b - a for a, b in zip(registers, registers[1:])]
    wait_until(lambda: series_pixels(browser, "power-chart") > 1000, "the power line", timeout=10)
    wait_until(lambda: series_pixels(browser, "energy-chart") > 1000, "the energy bars", timeout=10)
    screenshot(browser, tmp_path, "capture-history", 1100)
    assert console_errors(browser) == []


def test_demo_serve_switches_between_meters(tmp_path: Path, browser: Any) -> None:
    server = ServeProcess(tmp_path, name="demo")
    server.start_command(
        [sys.executable, "-m", "amshan", "demo", "--serve", "--port", "0", "--interval", "0.1"]
    )
    try:
        by_meter: Dict[str, List[Dict[str, Any]]] = {}
        for dictionary in decoded(bundled_frames("all")):
            if "meter_id" in dictionary:
                by_meter.setdefault(dictionary["meter_id"], []).append(dictionary)
        browser.get(server.url)
        wait_until(
            lambda: len(browser.find_elements("css selector", "#meters button")) == len(by_meter),
            "a button per meter",
            timeout=LOAD_TIMEOUT,
        )
        for meter, dictionaries in by_meter.items():
            browser.find_element("css selector", f'#meters button[data-meter="{meter}"]').click()
            state = wait_for_page(
                browser,
                f"meter {meter}",
                lambda s, meter=meter: s["selected"] == meter and s["fields"]["meter_id"]["value"] == meter,
            )
            assert state["fields"]["meter_type"]["value"] == dictionaries[0]["meter_type"]
            assert state["fields"]["meter_manufacturer"]["value"] == dictionaries[0]["meter_manufacturer"]
            phases = max(
                int(name[-1])
                for d in dictionaries
                for name in d
                if name.startswith(("voltage_l", "current_l"))
            )
            assert len(state["rows"]) == phases
        assert browser.execute_script("return location.hash") == f"#meter={meter}"
        screenshot(browser, tmp_path, "demo-meters", 1100)
        assert console_errors(browser) == []
    finally:
        server.stop()
