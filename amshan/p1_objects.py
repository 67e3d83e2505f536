"""The P1 object table: which reduced OBIS id of a P1 telegram line gives which dictionary key, and how.

Data only, apart from the parser (``amshan/p1.py``), so a new meter specification is a table edit. Field
names are those of the DLMS meters (``amshan/obis_map.py``); in a P1 telegram group B is the M-Bus channel,
so only the B = 0 forms of that table apply. Codes missing here still decode: a line with one value goes under
its dotted code (``"1.0.1.8.1.255"``), see ``amshan/p1.py``.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from amshan.obis_map import obis_name_map

# How the values of a line become dictionary entries (the parser has one handler per kind).
NUMBER = "number"  # one value, scaled by its unit (kW -> W ...): an int when exact, else a float
COUNT = "count"  # one value without a unit: an int (counters, device types, switch states)
TEXT = "text"  # one value kept as the string sent (identifiers, versions, hex-coded text messages)
CLOCK = "clock"  # one YYMMDDhhmmssX time stamp: a naive datetime
MBUS_READING = "mbus_reading"  # (time stamp)(value*unit) of M-Bus channel n: mbus_<n>_value/_unit/_timestamp
MBUS_READING_DSMR3 = "mbus_reading_dsmr3"  # DSMR <= 3: (stamp)(..)(..)(..)(id)(unit) then (value)
FAILURE_LOG = "failure_log"  # (count)(0-0:96.7.19)(end)(duration*s)...: power_failure_<i>_end/_duration
MAX_DEMAND = "max_demand"  # Belgian (time stamp)(value*kW) of this month: max_demand_month, .._time
MAX_DEMAND_HISTORY = "max_demand_history"  # Belgian (count)(id)(id)[(month)(time)(value*kW)]...

MBUS_CHANNELS = range(1, 5)
"""M-Bus channels a P1 port carries (DSMR: up to 4 devices: gas, water, heat, a slave electricity meter)."""

# (reduced id, key, kind); "n" in group B stands for every M-Bus channel.
_P1_TABLE: Tuple[Tuple[str, str, str], ...] = (
    ("0-0:1.0.0", "meter_datetime", CLOCK),
    ("1-3:0.2.8", "1.3.0.2.8.255", TEXT),  # DSMR version, e.g. "50"
    ("1-0:0.0.0", "1.0.0.0.0.255", TEXT),  # meter serial number (German, Irish meters), leading zeros kept
    ("0-0:96.1.4", "0.0.96.1.4.255", TEXT),  # Belgian version information
    ("0-0:96.1.0", "meter_id", TEXT),  # equipment identifier (Sweden, Slovenia, Hungary)
    ("0-0:96.1.1", "0.0.96.1.1.255", TEXT),  # DSMR equipment identifier, hex-coded
    ("0-0:42.0.0", "0.0.42.0.0.255", TEXT),  # logical device name (Luxembourg, Hungary)
    ("0-0:96.14.0", "0.0.96.14.0.255", TEXT),  # tariff indicator, e.g. "0002"
    ("0-0:96.13.0", "0.0.96.13.0.255", TEXT),  # text message, hex-coded
    ("0-0:96.13.1", "0.0.96.13.1.255", TEXT),  # text message code (DSMR <= 4)
    ("1-0:99.97.0", "1.0.99.97.0.255", FAILURE_LOG),
    ("1-0:1.6.0", "max_demand_month", MAX_DEMAND),  # also max_demand_month_time
    ("0-0:98.1.0", "0.0.98.1.0.255", MAX_DEMAND_HISTORY),
    ("1-0:1.8.1", "", NUMBER),  # "" = the dotted code ("1.0.1.8.1.255"): energy registers per tariff
    ("1-0:1.8.2", "", NUMBER),
    ("1-0:1.8.3", "", NUMBER),
    ("1-0:1.8.4", "", NUMBER),
    ("1-0:2.8.1", "", NUMBER),
    ("1-0:2.8.2", "", NUMBER),
    ("1-0:2.8.3", "", NUMBER),
    ("1-0:2.8.4", "", NUMBER),
    ("0-0:17.0.0", "", NUMBER),  # power threshold of the breaker (kW, DSMR <= 3: A)
    ("1-0:1.4.0", "", NUMBER),  # Belgian current average (quarter-hour) demand
    ("1-0:31.4.0", "", NUMBER),  # Belgian fuse supervision threshold (A)
    ("0-0:96.3.10", "", COUNT),  # breaker state
    ("0-0:96.7.21", "", COUNT),  # power failures
    ("0-0:96.7.9", "", COUNT),  # long power failures
    ("1-0:32.32.0", "", COUNT),  # voltage sags L1, L2, L3
    ("1-0:52.32.0", "", COUNT),
    ("1-0:72.32.0", "", COUNT),
    ("1-0:32.36.0", "", COUNT),  # voltage swells L1, L2, L3
    ("1-0:52.36.0", "", COUNT),
    ("1-0:72.36.0", "", COUNT),
    ("0-n:24.1.0", "", COUNT),  # M-Bus device type (3 gas, 7 water, 4 heat)
    ("0-n:24.4.0", "", COUNT),  # M-Bus valve state
    ("0-n:96.1.0", "0.{n}.96.1.0.255", TEXT),  # M-Bus device equipment identifier
    ("0-n:96.1.1", "0.{n}.96.1.1.255", TEXT),
    ("0-n:24.2.1", "mbus_{n}", MBUS_READING),  # last value read from the device
    ("0-n:24.2.3", "mbus_{n}", MBUS_READING),  # Belgian gas, not temperature-corrected
    ("0-n:24.3.0", "mbus_{n}", MBUS_READING_DSMR3),
)

_TEXT_FIELDS = frozenset(("list_ver_id", "meter_id", "meter_type"))

UNITS: Dict[str, Tuple[int, str]] = {
    # unit as sent (any case is looked up lower-cased) -> (power of ten to scale by, unit after scaling)
    "w": (0, "W"),
    "kw": (3, "W"),
    "wh": (0, "Wh"),
    "kwh": (3, "Wh"),
    "var": (0, "var"),
    "kvar": (3, "var"),
    "varh": (0, "varh"),
    "kvarh": (3, "varh"),
    "va": (0, "VA"),
    "kva": (3, "VA"),
    "vah": (0, "VAh"),
    "kvah": (3, "VAh"),
    "mwh": (6, "Wh"),
}
"""Units scaled to the DLMS meters' units; other units (V, A, Hz, m3, GJ, ...) keep the value, as a float."""

INTEGER_UNITS = frozenset(("s",))
"""Units whose values are counts (failure durations in seconds): an int, not a float."""


def dotted_key(reduced: str) -> Optional[str]:
    """Return the dotted key of a reduced id ("1-0:1.8.1" -> "1.0.1.8.1.255"), None when it is not one."""
    ab, colon, cde = reduced.partition(":")
    a, dash, b = ab.partition("-")
    groups = cde.split(".")
    if not (colon and dash and len(groups) == 3):
        return None
    parts = (a, b, *groups)
    if not all(part.isdigit() and len(part) <= 3 and int(part) <= 255 for part in parts):
        return None
    return ".".join(str(int(part)) for part in parts) + ".255"


def _table() -> Dict[str, Tuple[str, str]]:
    """Return the P1 objects keyed by reduced id, the DLMS names (B = 0) first, M-Bus channels expanded."""
    table: Dict[str, Tuple[str, str]] = {}
    for dotted, name in obis_name_map.items():
        a, b, c, d, e, _f = dotted.split(".")
        if b == "0" and name != "meter_datetime":
            table[f"{a}-{b}:{c}.{d}.{e}"] = (name, TEXT if name in _TEXT_FIELDS else NUMBER)
    for reduced, key, kind in _P1_TABLE:
        for channel in MBUS_CHANNELS if "-n:" in reduced else (0,):
            code = reduced.replace("-n:", f"-{channel}:")
            table[code] = (key.format(n=channel) or str(dotted_key(code)), kind)
    return table


P1_OBJECTS: Dict[str, Tuple[str, str]] = _table()
"""Reduced id ("1-0:1.7.0") -> (dictionary key, kind) for every P1 object with a known meaning."""
