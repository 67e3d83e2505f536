"""Helpers to test `amshan serve`: a simulated meter in a thread, the server process, headless Chromium."""

from __future__ import annotations

import asyncio
import math
import os
import random
import re
import shutil
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import _cosem_encoder as enc
from _hdlc_builder import build_frame
from _processes import ManagedProcess, wait_until
from _support import PROJECT_ROOT, require_tool

from amshan.reader import MeterReader
from amshan.simulator import MeterSimulator

SERVE = [sys.executable, "-m", "amshan", "serve"]
_URL = re.compile(r"http://127\.0\.0\.1:(\d+)/")
SCREENSHOTS_ENV = "AMSHAN_SCREENSHOTS"  # a folder: screenshots are also copied there (how docs/ is made)


class ThreadedSimulator:
    """The library's simulated meter (a real TCP server) on its own event loop in a thread."""

    def __init__(self, frames: Sequence[bytes], interval: float, port: int = 0) -> None:
        self.frames = list(frames)
        self.interval = interval
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._stopped: Optional[asyncio.Event] = None
        self._thread = threading.Thread(target=self._run, name="simulated-meter", daemon=True)
        self._ready = threading.Event()

    def _run(self) -> None:
        async def main() -> None:
            self._stopped = asyncio.Event()
            async with MeterSimulator(self.frames, interval=self.interval, port=self.port) as simulator:
                self.port = simulator.port
                self._ready.set()
                await self._stopped.wait()

        self._loop.run_until_complete(main())
        self._loop.close()

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> ThreadedSimulator:
        self._thread.start()
        assert self._ready.wait(10), "the simulated meter did not start"
        return self

    def stop(self) -> None:
        if self._thread.is_alive() and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(10)


class ServeProcess:
    """`amshan serve` as a child process on an ephemeral port, stopped by its PID."""

    def __init__(self, directory: Path, name: str = "serve") -> None:
        self.directory = directory
        self.name = name
        self.process: Optional[ManagedProcess] = None
        self.port = 0
        self.runs = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, source: str, *options: str, port: int = 0, timeout: float = 20.0) -> ServeProcess:
        """Start serving source (port 0: any free one) and wait until it says where it listens."""
        return self.start_command([*SERVE, source, "--port", str(port), *options], timeout)

    def start_command(self, argv: List[str], timeout: float = 20.0) -> ServeProcess:
        """Start a command that serves the page and wait until it says where it listens."""
        self.runs += 1
        log = self.directory / f"{self.name}-{self.runs}.log"
        self.process = ManagedProcess(argv, log)
        self.process.start()
        process = self.process
        wait_until(
            lambda: bool(_URL.search(process.log())) or not process.running(),
            "amshan serve to listen",
            timeout=timeout,
        )
        found = _URL.search(process.log())
        assert found and process.running(), f"amshan serve did not start:\n{process.log()[-3000:]}"
        self.port = int(found.group(1))
        return self

    def log(self) -> str:
        return "" if self.process is None else self.process.log()

    def pid(self) -> int:
        assert self.process is not None and self.process.pid is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def make_browser(directory: Path, width: int = 1100, height: int = 900) -> Any:
    """Start Debian's headless Chromium through its chromedriver, with a fresh profile under directory."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = require_tool("chromium")
    driver_path = require_tool("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    profile = directory / f"chromium-profile-{random.randrange(1 << 30)}"
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)


def screenshot(driver: Any, directory: Path, name: str, width: int) -> Path:
    """Save a full-page PNG under directory (and into $AMSHAN_SCREENSHOTS when set); return its path."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, height + 120)
    wait_until(lambda: page_state(driver)["drawn"], "the charts to redraw at the new size", timeout=5)
    path = directory / f"{name}.png"
    assert driver.save_screenshot(str(path)), "the screenshot was not saved"
    target = os.environ.get(SCREENSHOTS_ENV)
    if target:
        shutil.copyfile(path, PROJECT_ROOT / target / path.name)
    return path


PAGE_STATE_JS = """
const fields = {};
for (const el of document.querySelectorAll('[data-field]')) {
  if (el.closest('[hidden]') !== null) continue;
  fields[el.dataset.field] = {value: el.dataset.value, text: el.textContent};
}
const rows = [...document.querySelectorAll('#phases tbody tr')].map((row) => row.id);
const charts = {};
for (const id of ['power-chart', 'energy-chart']) {
  const canvas = document.querySelector('#' + id + ' canvas');
  charts[id] = canvas ? {width: canvas.width, height: canvas.height} : null;
}
return {
  seq: Number(document.body.dataset.seq || 0),
  started: document.body.dataset.started || '',
  ready: document.body.dataset.ready === 'true',
  link: document.getElementById('link').textContent,
  selected: document.body.dataset.meter || '',
  fields, rows, charts,
  phasesShown: !document.getElementById('phases-card').hidden,
  drawn: Object.values(charts).every((c) => c !== null && c.width > 0),
  powerTitle: document.getElementById('power-title').textContent,
  energyTitle: document.getElementById('energy-title').textContent,
};
"""

# Pixels of a series colour on a chart's canvas: uPlot draws axes and grid grey, the series orange and green.
SERIES_PIXELS_JS = """
const canvas = document.querySelector('#' + arguments[0] + ' canvas');
if (!canvas) return -1;
const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let count = 0;
for (let i = 0; i < data.length; i += 4) {
  const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
  if (a > 100 && r > 170 && g < 140 && b < 110 && r - g > 80) count++;
}
return count;
"""


def page_state(driver: Any) -> Dict[str, Any]:
    """Return what the page shows, read in one script run (so it is one consistent moment)."""
    state: Dict[str, Any] = driver.execute_script(PAGE_STATE_JS)
    return state


def series_pixels(driver: Any, chart_id: str) -> int:
    """Return how many pixels of the import series' colour a chart's canvas holds (0: nothing drawn)."""
    return int(driver.execute_script(SERIES_PIXELS_JS, chart_id))


def console_errors(driver: Any, allowed: Sequence[str] = ()) -> List[str]:
    """Return the browser console's errors, less those matching an allowed pattern."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and not any(re.search(pattern, entry["message"]) for pattern in allowed)
    ]


def decoded(frames: Sequence[bytes]) -> List[Dict[str, Any]]:
    """Return the dictionaries a MeterReader decodes from the frames, in order."""
    reader = MeterReader()
    return [dictionary for frame in frames for dictionary in reader.read(frame)]


def merged(dictionaries: Sequence[Dict[str, Any]], count: int) -> Dict[str, Any]:
    """Return every field's latest value after the first count messages of a replay in a loop."""
    values: Dict[str, Any] = {}
    for index in range(count):
        values.update(dictionaries[index % len(dictionaries)])
    return values


def shown_equals(shown: Dict[str, Dict[str, str]], expected: Dict[str, Any]) -> List[str]:
    """Return the differences between the fields a page shows and the expected values (empty: equal)."""
    problems = []
    for name, element in shown.items():
        want = expected.get(name)
        got = element["value"]
        if want is None:
            if got != "":
                problems.append(f"{name}: shows {got!r}, expected nothing")
        elif isinstance(want, datetime):
            if got != want.isoformat():
                problems.append(f"{name}: shows {got!r}, expected {want.isoformat()!r}")
        elif isinstance(want, str):
            if got != want:
                problems.append(f"{name}: shows {got!r}, expected {want!r}")
        elif not math.isclose(float(got), want, rel_tol=1e-12) or not math.isclose(
            float(element["text"]), want, rel_tol=1e-3, abs_tol=1e-3
        ):
            problems.append(f"{name}: shows {got!r} ({element['text']!r}), expected {want!r}")
    return problems


def synthetic_day(start: datetime, hours: int, step: int = 10, seed: int = 14) -> List[bytes]:
    """A recording of a three-phase meter: power every ``step`` s, registers and clock, for ``hours`` hours.

    Built as generic OBIS lists (the shape Landis+Gyr and Aidon push) so the recording spans more time than
    the corpus's captures; the power follows a day's shape, the import register integrates it.
    """
    rng = random.Random(seed)
    frames = []
    register = 52_113_000.0  # Wh
    moment = start
    power = 800.0
    for index in range(hours * 3600 // step):
        hour = moment.hour + moment.minute / 60
        base = 500 + 1400 * max(0.0, math.sin((hour - 6) / 24 * 2 * math.pi)) + 900 * (17 <= hour < 21)
        power = max(
            150.0, 0.8 * power + 0.2 * base + rng.gauss(0, 120) + (2500 if rng.random() < 0.01 else 0)
        )
        watts = int(power)
        volts = [2300 + rng.randrange(-30, 30) for _ in range(3)]
        amps = [int(watts / 3 / (v / 10) * 100) for v in volts]
        items = [
            enc.register("0.0.96.1.0.255", enc.octet_string(b"7359992912345678")),
            enc.register("0.0.96.1.7.255", enc.octet_string(b"6534")),
            enc.register("1.0.1.7.0.255", enc.double_long_unsigned(watts), 0, 27),
            enc.register("1.0.2.7.0.255", enc.double_long_unsigned(0), 0, 27),
            *[
                enc.register(f"1.0.{c}.7.0.255", enc.long_unsigned(v), -1, 35)
                for c, v in zip((32, 52, 72), volts)
            ],
            *[enc.register(f"1.0.{c}.7.0.255", enc.long(a), -2, 33) for c, a in zip((31, 51, 71), amps)],
            enc.register("0.0.1.0.0.255", enc.octet_string(enc.date_time_bytes(moment))),
        ]
        if index % (3600 // step) == 0:
            items.append(enc.register("1.0.1.8.0.255", enc.double_long_unsigned(int(register)), 0, 30))
        frames.append(build_frame(enc.notification(enc.array(items))))
        register += watts * step / 3600
        moment += timedelta(seconds=step)
    return frames
