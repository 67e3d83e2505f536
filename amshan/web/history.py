"""What the web page draws, per meter: the latest values, a bounded power series and energy per hour.

Sans-IO and synchronous: the server adds each decoded dictionary with the time it belongs to, the page and the
API read series back. Memory is bounded by a time window and a sample count per meter and by a number of
meters; ``HistoryFile`` keeps the same state in SQLite so a restart keeps the charts.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Deque, Dict, Iterable, List, Mapping, Optional, Tuple

from amshan.generic import ItemValue
from amshan.obis_map import (
    NEK_HAN_FIELD_ACTIVE_POWER_EXPORT,
    NEK_HAN_FIELD_ACTIVE_POWER_EXPORT_HOUR,
    NEK_HAN_FIELD_ACTIVE_POWER_IMPORT,
    NEK_HAN_FIELD_ACTIVE_POWER_IMPORT_HOUR,
    NEK_HAN_FIELD_METER_DATETIME,
    NEK_HAN_FIELD_METER_ID,
    NEK_HAN_FIELD_METER_MANUFACTURER,
    NEK_HAN_FIELD_METER_TYPE,
)

__all__ = [
    "ENERGY_FIELDS",
    "History",
    "HistoryError",
    "HistoryFile",
    "MeterState",
    "jsonable",
    "numeric_values",
]

HOUR = 3600
POWER_WINDOW = 3600.0  # the rolling power chart: the last hour at message resolution
ENERGY_HOURS = 48  # energy per hour bars: the last 48 hours
MAX_SAMPLES = 7200  # per meter: an hour of messages every 0.5 s, whatever the meter's cadence
MAX_METERS = 16  # beyond this the meter heard from least recently is forgotten
MAX_GAP = 300.0  # power is integrated across gaps up to this long; a longer one is a link outage
ENERGY_FIELDS = {
    "energy_import": NEK_HAN_FIELD_ACTIVE_POWER_IMPORT,
    "energy_export": NEK_HAN_FIELD_ACTIVE_POWER_EXPORT,
}
"""The derived hourly series (Wh per hour) /api/history serves, and the power field each integrates."""
_REGISTER_OF = {
    "energy_import": NEK_HAN_FIELD_ACTIVE_POWER_IMPORT_HOUR,
    "energy_export": NEK_HAN_FIELD_ACTIVE_POWER_EXPORT_HOUR,
}
_PHASE_FIELD = re.compile(r"^(?:voltage|current|active_power_import|active_power_export)_l([123])$")
_SCHEMA_VERSION = "amshan-history 1"


class HistoryError(Exception):
    """The history file cannot be used (corrupt, not ours, locked by another process, unwritable)."""


def jsonable(value: ItemValue) -> Any:
    """Return a decoded value as JSON can carry it: dates and times in ISO 8601, the rest unchanged."""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return value


def numeric_values(dictionary: Mapping[str, ItemValue]) -> Dict[str, float]:
    """Return the finite numeric fields of a decoded dictionary (what charts and metrics can show)."""
    return {
        name: float(value)
        for name, value in dictionary.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


@dataclass
class _Hour:
    """One hour of one meter: the first reading of each cumulative register in it, and integrated power."""

    registers: Dict[str, float] = field(default_factory=dict)  # energy series -> first register value (Wh)
    integrated: Dict[str, float] = field(default_factory=dict)  # energy series -> integrated power (Wh)


@dataclass
class MeterState:
    """Everything kept about one meter: latest values, power samples and hourly energy."""

    key: str
    values: Dict[str, Any] = field(default_factory=dict)  # every field's latest value (JSON-ready)
    last: Dict[str, Any] = field(default_factory=dict)  # the last dictionary as decoded (JSON-ready)
    updated: float = 0.0  # the time of the last message
    messages: int = 0
    phases: int = 0  # the highest phase number any per-phase field named (0: none seen)
    samples: Deque[Tuple[float, Dict[str, float]]] = field(default_factory=deque)
    hours: Dict[int, _Hour] = field(default_factory=dict)
    _last_power: Dict[str, Tuple[float, float]] = field(default_factory=dict)  # power field -> (t, watts)

    def info(self) -> Dict[str, Any]:
        """Return the meter's identity and state for the page and the API."""
        values = self.values
        return {
            "meter": self.key,
            "meter_id": values.get(NEK_HAN_FIELD_METER_ID),
            "meter_type": values.get(NEK_HAN_FIELD_METER_TYPE),
            "meter_manufacturer": values.get(NEK_HAN_FIELD_METER_MANUFACTURER),
            "meter_datetime": values.get(NEK_HAN_FIELD_METER_DATETIME),
            "phases": self.phases,
            "messages": self.messages,
            "updated": self.updated,
        }

    def energy(self, series: str, since: float = -math.inf) -> List[Tuple[float, float]]:
        """Return (hour start, Wh) of each hour from ``since``: register differences or integrated power."""
        register = _REGISTER_OF[series]
        points = []
        for hour in sorted(self.hours):
            if (hour + 1) * HOUR <= since:
                continue
            start = self.hours[hour].registers.get(register)
            following = self.hours.get(hour + 1)
            end = following.registers.get(register) if following is not None else None
            if start is not None and end is not None and end >= start:
                points.append((float(hour * HOUR), end - start))
            elif series in self.hours[hour].integrated:
                points.append((float(hour * HOUR), self.hours[hour].integrated[series]))
        return points

    def series(self, name: str, since: float = -math.inf) -> List[Tuple[float, float]]:
        """Return (time, value) of one numeric field from ``since`` on, or of a derived energy series."""
        if name in ENERGY_FIELDS:
            return self.energy(name, since)
        return [(t, values[name]) for t, values in self.samples if t >= since and name in values]


class History:
    """The bounded in-memory history of every meter one server reads.

    ``window`` is how far back the power samples go from the newest one (None: no limit, as for a capture
    file), ``max_samples`` caps them per meter and ``energy_hours`` caps the hourly buckets.
    """

    def __init__(
        self,
        *,
        window: Optional[float] = POWER_WINDOW,
        max_samples: int = MAX_SAMPLES,
        energy_hours: Optional[int] = ENERGY_HOURS,
        max_meters: int = MAX_METERS,
    ) -> None:
        """Start empty with the given bounds."""
        self.window = window
        self.max_samples = max_samples
        self.energy_hours = energy_hours
        self.max_meters = max_meters
        self.meters: Dict[str, MeterState] = {}
        self._id_of_manufacturer: Dict[str, str] = {}

    def meter_key(self, dictionary: Mapping[str, ItemValue]) -> str:
        """Tell which meter a dictionary belongs to: its meter id, else the last id its manufacturer sent.

        Short lists (Aidon and Kaifa list 1) carry no meter id; they belong to the meter of the same
        manufacturer on the stream, or to a meter keyed by the manufacturer's name until an id arrives.
        """
        manufacturer = str(dictionary.get(NEK_HAN_FIELD_METER_MANUFACTURER) or "meter")
        meter_id = dictionary.get(NEK_HAN_FIELD_METER_ID)
        if meter_id is None:
            return self._id_of_manufacturer.get(manufacturer, manufacturer)
        key = str(meter_id)
        if self._id_of_manufacturer.get(manufacturer) != key:
            self._id_of_manufacturer[manufacturer] = key
            unnamed = self.meters.pop(manufacturer, None)
            if unnamed is not None and key not in self.meters:
                unnamed.key = key
                self.meters[key] = unnamed
        return key

    def add(self, dictionary: Mapping[str, ItemValue], t: float) -> MeterState:
        """Add one decoded dictionary at time ``t`` (seconds since the epoch); return its meter's state."""
        key = self.meter_key(dictionary)
        state = self.meters.pop(key, None) or MeterState(key)
        self.meters[key] = state  # most recently heard last: the first one is the one to forget
        while len(self.meters) > self.max_meters:
            del self.meters[next(iter(self.meters))]
        last = {name: jsonable(value) for name, value in dictionary.items()}
        numbers = numeric_values(dictionary)
        self._apply(state, t, last, numbers)
        return state

    def _apply(self, state: MeterState, t: float, last: Dict[str, Any], numbers: Dict[str, float]) -> None:
        """Fold one message into a meter's state and trim the state to its bounds."""
        state.last = last
        state.values.update(last)
        state.updated = max(state.updated, t)
        state.messages += 1
        for name in last:
            match = _PHASE_FIELD.match(name)
            if match:
                state.phases = max(state.phases, int(match.group(1)))
        if numbers:
            state.samples.append((t, numbers))
        bucket = state.hours.setdefault(int(t // HOUR), _Hour())
        for register in _REGISTER_OF.values():
            if register in numbers:
                bucket.registers.setdefault(register, numbers[register])
        for series, power in ENERGY_FIELDS.items():
            if power in numbers:
                self._integrate(state, series, power, t, numbers[power])
        self._trim(state)

    def _integrate(self, state: MeterState, series: str, power: str, t: float, watts: float) -> None:
        """Add the energy since the previous power reading (held until this one) to the hours it spans."""
        previous = state._last_power.get(power)
        state._last_power[power] = (t, watts)
        state.hours[int(t // HOUR)].integrated.setdefault(series, 0.0)
        if previous is None or not 0 < t - previous[0] <= MAX_GAP:
            return
        start, held = previous
        while start < t:
            hour = int(start // HOUR)
            end = min(t, (hour + 1) * HOUR)
            bucket = state.hours.setdefault(hour, _Hour())
            bucket.integrated[series] = bucket.integrated.get(series, 0.0) + held * (end - start) / HOUR
            start = end

    def _trim(self, state: MeterState) -> None:
        """Drop samples older than the window or beyond the count, and hours beyond the energy bound."""
        samples = state.samples
        while len(samples) > self.max_samples:
            samples.popleft()
        if self.window is not None and samples:
            oldest = samples[-1][0] - self.window
            while samples and samples[0][0] < oldest:
                samples.popleft()
        if self.energy_hours is not None and len(state.hours) > self.energy_hours + 2:
            for hour in sorted(state.hours)[: len(state.hours) - self.energy_hours - 2]:
                del state.hours[hour]

    def meter(self, key: Optional[str] = None) -> Optional[MeterState]:
        """Return the named meter, or the one heard from last when no name is given."""
        if key is not None:
            return self.meters.get(key)
        return next(reversed(self.meters.values()), None)

    def restore(self, states: Iterable[MeterState]) -> None:
        """Take meters loaded from a history file, then apply this history's bounds to them."""
        for state in sorted(states, key=lambda state: state.updated):
            self.meters[state.key] = state
            manufacturer = state.values.get(NEK_HAN_FIELD_METER_MANUFACTURER)
            if manufacturer is not None and state.values.get(NEK_HAN_FIELD_METER_ID) is not None:
                self._id_of_manufacturer[str(manufacturer)] = state.key
            self._trim(state)
        while len(self.meters) > self.max_meters:
            del self.meters[next(iter(self.meters))]


class HistoryFile:
    """A History kept in SQLite (WAL): every message is written, and a restart loads the charts back.

    The file is held with an exclusive lock while open, so two servers cannot interleave one history.
    Writes are batched: ``add`` queues rows, ``flush`` commits them (the server flushes once a second).
    """

    def __init__(self, path: str | Path, history: History) -> None:
        """Open (or create) the file, load what it holds into ``history``; raise HistoryError if unusable."""
        self.path = Path(path)
        self.history = history
        self._pending: List[Tuple[str, float, str]] = []
        self._closed = False
        try:
            self._db = sqlite3.connect(str(self.path), timeout=1.0, isolation_level=None)
        except sqlite3.Error as error:
            raise HistoryError(f"cannot open the history file {str(self.path)!r}: {error}") from None
        try:
            self._open()
            history.restore(self._load())
        except sqlite3.OperationalError as error:
            self._db.close()
            if "locked" in str(error) or "busy" in str(error):
                raise HistoryError(
                    f"the history file {str(self.path)!r} is in use by another process (is another amshan"
                    " serve running with it?)"
                ) from None
            raise HistoryError(f"cannot use the history file {str(self.path)!r}: {error}") from None
        except (sqlite3.DatabaseError, ValueError, KeyError, TypeError) as error:
            self._db.close()
            raise HistoryError(
                f"the history file {str(self.path)!r} is corrupt or not an amshan history ({error});"
                " move it away or give another --history file"
            ) from None

    def _open(self) -> None:
        """Take the exclusive lock, check the file is ours and sound, and create the tables in a new one."""
        db = self._db
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise sqlite3.OperationalError(f"the file cannot use write-ahead logging (journal mode {mode})")
        db.execute("BEGIN EXCLUSIVE")
        try:
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check}")
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                self._create()
            elif "meta" not in tables or _schema(db) != _SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"expected the schema {_SCHEMA_VERSION!r}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _create(self) -> None:
        """Create the tables of a new history file."""
        db = self._db
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema', ?)", (_SCHEMA_VERSION,))
        db.execute("CREATE TABLE messages (meter TEXT NOT NULL, t REAL NOT NULL, dictionary TEXT NOT NULL)")
        db.execute("CREATE INDEX messages_by_time ON messages (t)")

    def _load(self) -> List[MeterState]:
        """Replay the stored messages into fresh meter states (within the history's bounds)."""
        replay = History(
            window=self.history.window,
            max_samples=self.history.max_samples,
            energy_hours=self.history.energy_hours,
            max_meters=self.history.max_meters,
        )
        rows = self._db.execute("SELECT meter, t, dictionary FROM messages ORDER BY rowid")
        for meter, t, text in rows:
            last = json.loads(text)
            if not isinstance(last, dict):
                raise ValueError("a stored message is not an object")
            state = replay.meters.pop(meter, None) or MeterState(meter)
            replay.meters[meter] = state
            replay._apply(state, float(t), last, numeric_values(last))
        return list(replay.meters.values())

    def add(self, dictionary: Mapping[str, ItemValue], t: float) -> MeterState:
        """Add a dictionary to the history and queue it for the file."""
        state = self.history.add(dictionary, t)
        self._pending.append((state.key, t, json.dumps(state.last)))
        return state

    def flush(self) -> None:
        """Write the queued messages and forget the ones the history no longer keeps; raise HistoryError."""
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        newest = max(row[1] for row in rows)
        keep = _keep_seconds(self.history)
        try:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO messages VALUES (?, ?, ?)", rows)
            if keep is not None:
                self._db.execute("DELETE FROM messages WHERE t < ?", (newest - keep,))
            self._db.execute("COMMIT")
        except sqlite3.Error as error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise HistoryError(f"cannot write the history file {str(self.path)!r}: {error}") from None

    def close(self) -> None:
        """Write what is queued and close the file (again: nothing)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            self._db.close()


def _schema(db: sqlite3.Connection) -> object:
    """Return the schema a history file states, None when it states none."""
    row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    return None if row is None else row[0]


def _keep_seconds(history: History) -> Optional[float]:
    """Return how long stored messages matter: the longer of the power window and the energy hours."""
    if history.window is None or history.energy_hours is None:
        return None
    return max(history.window, (history.energy_hours + 2) * HOUR)
