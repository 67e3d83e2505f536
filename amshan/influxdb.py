"""Forward decoded meter messages to InfluxDB: line protocol and a batching writer that survives outages.

Stdlib only. The writer speaks the HTTP ``/write`` endpoint that every InfluxDB 1.x server and the
1.x-compatible API of InfluxDB 2.x offer. Every point carries an explicit timestamp (the meter's clock
when the message has one, else the time it was received, fixed when the point is made), so writing the
same batch twice stores each point once: InfluxDB overwrites a point with the same series and timestamp.
Points leave the writer's buffer only when the server has acknowledged them (HTTP 2xx); while the server
is down they wait in a bounded buffer and the writer retries with exponential back-off.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import http.client
import itertools
import json
import logging
import math
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Union

from amshan._ratelimit import LogLimiter
from amshan.meter_connection import ExponentialBackOff

_LOGGER = logging.getLogger(__name__)

MessageValue = Union[str, int, float, datetime]

DEFAULT_MEASUREMENT = "amshan"
DEFAULT_BATCH_SIZE = 500
DEFAULT_FLUSH_INTERVAL = 5.0
DEFAULT_MAX_BUFFER = 100_000
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_BACK_OFF = 60.0
# Logged once when stop()'s drain time runs out with points unwritten; callers that report it match on it.
DRAIN_ENDED = "InfluxDB drain time ran out: %d points not written (last error: %s)"

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\n"})
_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\n"})


@dataclass(frozen=True)
class Point:
    """One InfluxDB point: a measurement, tags, numeric fields and a timestamp in nanoseconds."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, float]
    timestamp_ns: int

    def to_line(self) -> str:
        """Return the point as one line of InfluxDB line protocol, every field a float."""
        parts = [self.measurement.translate(_MEASUREMENT_ESCAPES)]
        parts.extend(
            f"{key.translate(_KEY_ESCAPES)}={value.translate(_KEY_ESCAPES)}"
            for key, value in sorted(self.tags.items())
            if value
        )
        fields = ",".join(
            f"{key.translate(_KEY_ESCAPES)}={float(value)!r}" for key, value in sorted(self.fields.items())
        )
        return f"{','.join(parts)} {fields} {self.timestamp_ns}"


def message_to_point(
    message: Mapping[str, MessageValue],
    *,
    received_ns: int,
    measurement: str = DEFAULT_MEASUREMENT,
    meter_id: str | None = None,
    manufacturer: str | None = None,
    use_meter_time: bool = True,
) -> Point | None:
    """Turn one decoded message into a point, or None when it carries no numeric value.

    Every int or float value becomes a float field (InfluxDB rejects a field whose type changes, and the same
    quantity is an int from one meter and a float from another). Tags are ``meter_id`` and ``manufacturer``
    (``meter_manufacturer``, or a P1 meter's ``meter_manufacturer_id``), taken from the message or, when it
    lacks them (short lists), from the arguments. The timestamp is
    ``meter_datetime`` when present and ``use_meter_time`` is set (a naive one is read as the host's local
    time), else ``received_ns``.
    """
    fields = {
        key: float(value)
        for key, value in message.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }
    if not fields:
        return None
    tags: dict[str, str] = {}
    found_id = message.get("meter_id", meter_id)
    if found_id is not None:
        tags["meter_id"] = str(found_id)
    found_manufacturer = message.get("meter_manufacturer", message.get("meter_manufacturer_id", manufacturer))
    if found_manufacturer is not None:
        tags["manufacturer"] = str(found_manufacturer)
    timestamp_ns = received_ns
    meter_time = message.get("meter_datetime")
    if use_meter_time and isinstance(meter_time, datetime):
        aware = meter_time if meter_time.tzinfo is not None else meter_time.astimezone()
        timestamp_ns = (aware - _EPOCH) // _MICROSECOND * 1000
    return Point(measurement, tags, fields, timestamp_ns)


class PointMaker:
    """Make points from one meter's messages, carrying its id and manufacturer over to the short lists."""

    def __init__(self, measurement: str = DEFAULT_MEASUREMENT, *, use_meter_time: bool = True) -> None:
        """Remember the measurement name and the timestamp rule for every point made."""
        self._measurement = measurement
        self._use_meter_time = use_meter_time
        self._meter_id: str | None = None
        self._manufacturer: str | None = None

    def make(self, message: Mapping[str, MessageValue]) -> Point | None:
        """Return the point for a message received now, tagged with the last meter id and maker seen."""
        received_ns = time.time_ns()
        if "meter_id" in message:
            self._meter_id = str(message["meter_id"])
        found_manufacturer = message.get("meter_manufacturer", message.get("meter_manufacturer_id"))
        if found_manufacturer is not None:
            self._manufacturer = str(found_manufacturer)
        return message_to_point(
            message,
            received_ns=received_ns,
            measurement=self._measurement,
            meter_id=self._meter_id,
            manufacturer=self._manufacturer,
            use_meter_time=self._use_meter_time,
        )


class WriteError(Exception):
    """A write the server refused or that did not reach it; ``retry`` says whether trying again can help."""

    def __init__(self, message: str, *, retry: bool) -> None:
        """Keep whether the failure is transient next to its description."""
        super().__init__(message)
        self.retry = retry


class InfluxDbWriter:
    """Batch points to InfluxDB's HTTP ``/write`` endpoint, retrying with back-off while it is unreachable.

    ``add()`` never blocks: points go into a buffer that holds at most ``max_buffer`` points (100 000 by
    default: more than two days of a meter pushing every 2 s). When the buffer is full the oldest point is
    dropped and counted in ``dropped`` with a warning; nothing else ever drops a point except a server that
    rejects it as malformed (HTTP 400, counted in ``rejected``). A point leaves the buffer only when the
    server has acknowledged the write that carried it. ``run()`` writes a batch when ``batch_size`` points
    are waiting or ``flush_interval`` seconds have passed; after ``stop()`` it writes what is left, giving up
    after ``drain_timeout`` seconds (the points still buffered are then counted in ``pending``). Failed
    writes are retried after 1, 2, 4 ... seconds, at most ``max_back_off`` (60 by default).
    """

    def __init__(
        self,
        url: str,
        database: str,
        *,
        retention_policy: str | None = None,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        timeout: float = DEFAULT_TIMEOUT,
        max_back_off: float = DEFAULT_MAX_BACK_OFF,
        drain_timeout: float = 10.0,
    ) -> None:
        """Check the URL and remember where and how to write."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// InfluxDB URL, found {url!r}")
        if batch_size < 1 or max_buffer < batch_size:
            raise ValueError(f"expected 1 <= batch_size <= max_buffer, found {batch_size} and {max_buffer}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        query = {"db": database, "precision": "ns"}
        if retention_policy:
            query["rp"] = retention_policy
        self._path = parts.path.rstrip("/") + "/write?" + urllib.parse.urlencode(query)
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if token:
            self._headers["Authorization"] = f"Token {token}"
        elif username is not None:
            credentials = base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {credentials}"
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_buffer = max_buffer
        self._timeout = timeout
        self._max_back_off = max_back_off
        self._drain_timeout = drain_timeout
        self._buffer: collections.deque[tuple[int, str]] = collections.deque()
        self._next_sequence = 0
        # Made in run(): on Python 3.9 an Event binds to the loop current when it is created.
        self._wake: asyncio.Event | None = None
        self._stop_event: asyncio.Event | None = None
        self._stopping = False
        self._overflow_log = LogLimiter()
        self._failure_log = LogLimiter()
        self.written = 0
        self.dropped = 0
        self.rejected = 0
        self.failed_writes = 0
        self.last_error: str | None = None  # the reason of the last failed write, e.g. "HTTP 404: ..."

    @property
    def pending(self) -> int:
        """Return how many points wait for the server's acknowledgement."""
        return len(self._buffer)

    def add(self, point: Point) -> None:
        """Queue a point for writing; when the buffer is full the oldest point is dropped and counted."""
        if len(self._buffer) >= self._max_buffer:
            self._buffer.popleft()
            self.dropped += 1
            _warn(
                self._overflow_log,
                "InfluxDB buffer full (%d points): dropped the oldest, %d so far",
                self._max_buffer,
                self.dropped,
            )
        self._buffer.append((self._next_sequence, point.to_line()))
        self._next_sequence += 1
        if self._wake is not None and len(self._buffer) >= self._batch_size:
            self._wake.set()

    def stop(self) -> None:
        """Ask ``run()`` to write what is buffered and return."""
        self._stopping = True
        if self._wake is not None and self._stop_event is not None:
            self._stop_event.set()
            self._wake.set()

    async def run(self) -> None:
        """Write batches until ``stop()``, then drain the buffer within ``drain_timeout`` seconds."""
        loop = asyncio.get_running_loop()
        self._wake = wake = asyncio.Event()
        self._stop_event = stop_event = asyncio.Event()
        back_off = ExponentialBackOff(max_delay_sec=self._max_back_off)
        failures = 0
        deadline: float | None = None
        while True:
            if self._stopping:
                if deadline is None:
                    deadline = loop.time() + self._drain_timeout
                if not self._buffer:
                    return
            else:
                if len(self._buffer) < self._batch_size:
                    wake.clear()
                    await _wait(wake, self._flush_interval)
                if not self._buffer:
                    continue
            batch = list(itertools.islice(self._buffer, self._batch_size))
            body = "\n".join(line for _, line in batch).encode("utf-8")
            try:
                await loop.run_in_executor(None, self._post, body)
            except WriteError as error:
                if not error.retry:
                    _LOGGER.error("InfluxDB rejected %d points, dropping them: %s", len(batch), error)
                    self.rejected += len(batch)
                    self._acknowledge(batch[-1][0])
                    continue
                failures += 1
                self.failed_writes += 1
                self.last_error = str(error)
                back_off.failure()
                delay = back_off.current_delay_sec
                _warn(
                    self._failure_log,
                    "InfluxDB write failed (%s); %d points buffered, retrying in %.3g s",
                    error,
                    len(self._buffer),
                    delay,
                )
                if deadline is None:
                    await _wait(stop_event, delay)
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    _LOGGER.error(DRAIN_ENDED, len(self._buffer), self.last_error)
                    return
                await asyncio.sleep(min(delay, remaining))
                continue
            if failures:
                _LOGGER.info("InfluxDB write succeeded after %d failed attempts", failures)
            failures = 0
            back_off.reset()
            self._acknowledge(batch[-1][0])
            self.written += len(batch)
            if deadline is not None and loop.time() > deadline and self._buffer:
                _LOGGER.error(DRAIN_ENDED, len(self._buffer), self.last_error)
                return

    def _acknowledge(self, last_sequence: int) -> None:
        """Remove the points up to ``last_sequence`` (acknowledged; some may already have overflowed)."""
        while self._buffer and self._buffer[0][0] <= last_sequence:
            self._buffer.popleft()

    def _post(self, body: bytes) -> None:
        """POST one batch (runs in a worker thread); raise WriteError unless the server acknowledged it."""
        connection_class = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        connection = connection_class(self._host, self._port, timeout=self._timeout)
        try:
            connection.request("POST", self._path, body=body, headers=self._headers)
            response = connection.getresponse()
            text = response.read(4096).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as error:
            raise WriteError(f"{type(error).__name__}: {error}", retry=True) from error
        finally:
            connection.close()
        if 200 <= response.status < 300:
            return
        try:
            reason = str(json.loads(text).get("error", text))
        except (ValueError, AttributeError):
            reason = text.strip()
        # 400 means malformed or conflicting points: sending them again cannot succeed (InfluxDB has already
        # stored the good points of a partial write). Anything else (5xx, 404 database not found, 401/403,
        # 429) may heal: keep the points and retry.
        raise WriteError(f"HTTP {response.status}: {reason}", retry=response.status != 400)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Wait until the event is set or the seconds have passed, whichever comes first."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


def _warn(limiter: LogLimiter, message: str, *args: object) -> None:
    """Log a warning about a condition that can repeat: at most one a minute, the others at debug level."""
    if limiter.ready():
        _LOGGER.warning(message, *args)
    else:
        _LOGGER.debug(message, *args)
