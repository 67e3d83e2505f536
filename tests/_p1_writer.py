"""A test-only P1 telegram writer: telegrams built from drawn values, and the dictionary they must give.

Written from the format (han-spec.md §7.1, §13, §14), not from amshan's parser or tables: every expected
value comes from the number the writer drew, and the CRC from a bitwise CRC-16/ARC of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, List

from hypothesis import strategies as st

# (reduced id, dictionary key, kind); kinds: power/energy (W, var, Wh, varh base), volt, amp
NUMBER_LINES = [
    ("1-0:1.7.0", "active_power_import", "W"),
    ("1-0:2.7.0", "active_power_export", "W"),
    ("1-0:3.7.0", "reactive_power_import", "var"),
    ("1-0:4.7.0", "reactive_power_export", "var"),
    ("1-0:21.7.0", "active_power_import_l1", "W"),
    ("1-0:41.7.0", "active_power_import_l2", "W"),
    ("1-0:61.7.0", "active_power_import_l3", "W"),
    ("1-0:22.7.0", "active_power_export_l1", "W"),
    ("1-0:42.7.0", "active_power_export_l2", "W"),
    ("1-0:62.7.0", "active_power_export_l3", "W"),
    ("1-0:23.7.0", "reactive_power_import_l1", "var"),
    ("1-0:24.7.0", "reactive_power_export_l1", "var"),
    ("1-0:63.7.0", "reactive_power_import_l3", "var"),
    ("1-0:1.8.0", "active_power_import_hour", "Wh"),
    ("1-0:2.8.0", "active_power_export_hour", "Wh"),
    ("1-0:3.8.0", "reactive_power_import_hour", "varh"),
    ("1-0:4.8.0", "reactive_power_export_hour", "varh"),
    ("1-0:1.8.1", "1.0.1.8.1.255", "Wh"),
    ("1-0:1.8.2", "1.0.1.8.2.255", "Wh"),
    ("1-0:2.8.1", "1.0.2.8.1.255", "Wh"),
    ("1-0:2.8.2", "1.0.2.8.2.255", "Wh"),
    ("1-0:32.7.0", "voltage_l1", "V"),
    ("1-0:52.7.0", "voltage_l2", "V"),
    ("1-0:72.7.0", "voltage_l3", "V"),
    ("1-0:31.7.0", "current_l1", "A"),
    ("1-0:51.7.0", "current_l2", "A"),
    ("1-0:71.7.0", "current_l3", "A"),
]
SPELLINGS = {  # base unit -> how meters write it, with the power of ten the spelling divides by
    "W": [("kW", 3), ("W", 0)],
    "var": [("kvar", 3), ("kVAr", 3), ("var", 0)],
    "Wh": [("kWh", 3), ("Wh", 0)],
    "varh": [("kvarh", 3), ("kVArh", 3), ("varh", 0)],
}
MBUS_UNITS = ["m3", "GJ"]


def crc16_arc(data: bytes) -> int:
    """CRC-16/ARC bit by bit (poly 0xA001 reflected, init 0): the writer's own, slow and obvious."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def stamp(when: datetime, dst: bool) -> str:
    """Return a P1 time stamp YYMMDDhhmmssX."""
    return when.strftime("%y%m%d%H%M%S") + ("S" if dst else "W")


@dataclass
class Telegram:
    """A written telegram and the dictionary it must give."""

    data: bytes
    expected: Dict[str, Any] = field(default_factory=dict)


@st.composite
def telegrams(draw: st.DrawFn, with_crc: bool | None = None) -> Telegram:
    """Draw a telegram: random subset and order of lines, every unit, M-Bus channels, long text objects."""
    expected: Dict[str, Any] = {}
    lines: List[str] = []
    maker = draw(st.sampled_from(["KAM", "LGF", "ISk", "ELL", "KFM", "ADN", "Ene", "XMX"]))
    ident = draw(
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/\\"), max_size=16)
    )
    expected["meter_manufacturer_id"] = maker
    if ident:
        expected["meter_type_id"] = ident
    when = draw(
        st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)).map(lambda d: d.replace(microsecond=0))
    )
    if draw(st.booleans()):
        lines.append(f"0-0:1.0.0({stamp(when, draw(st.booleans()))})")
        expected["meter_datetime"] = when
    for reduced, key, base in draw(
        st.lists(st.sampled_from(NUMBER_LINES), unique=True, max_size=len(NUMBER_LINES))
    ):
        if base in ("V", "A"):
            tenths = draw(st.integers(0, 99_999))
            lines.append(f"{reduced}({tenths // 10:04d}.{tenths % 10}*{base})")
            expected[key] = tenths / 10
            continue
        value = draw(st.integers(0, 10**9))
        spelling, power = draw(st.sampled_from(SPELLINGS[base]))
        text = f"{value:09d}" if power == 0 else f"{value // 1000:06d}.{value % 1000:03d}"
        lines.append(f"{reduced}({text}*{spelling})")
        expected[key] = value
    if draw(st.booleans()):  # a text message up to DSMR's 1024 characters, hex-coded
        message = draw(st.binary(max_size=1024)).hex().upper()
        lines.append(f"0-0:96.13.0({message})")
        expected["0.0.96.13.0.255"] = message
    if draw(st.booleans()):
        equipment = draw(st.binary(min_size=1, max_size=17)).hex().upper()
        lines.append(f"0-0:96.1.1({equipment})")
        expected["0.0.96.1.1.255"] = equipment
    for channel in draw(st.lists(st.integers(1, 4), unique=True, max_size=4)):
        thousandths = draw(st.integers(0, 10**8))
        unit = draw(st.sampled_from(MBUS_UNITS))
        read_at = draw(st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31))).replace(microsecond=0)
        lines.append(f"0-{channel}:24.1.0(003)")
        reading = f"{thousandths // 1000:05d}.{thousandths % 1000:03d}*{unit}"
        lines.append(f"0-{channel}:24.2.1({stamp(read_at, False)})({reading})")
        expected[f"0.{channel}.24.1.0.255"] = 3
        expected[f"mbus_{channel}_value"] = thousandths / 1000
        expected[f"mbus_{channel}_unit"] = unit
        expected[f"mbus_{channel}_timestamp"] = read_at
    failures = draw(
        st.lists(
            st.tuples(st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)), st.integers(0, 10**9)),
            max_size=10,
        )
    )
    if failures or draw(st.booleans()):
        entries = "".join(
            f"({stamp(end.replace(microsecond=0), False)})({seconds:010d}*s)" for end, seconds in failures
        )
        lines.append(f"1-0:99.97.0({len(failures)})(0-0:96.7.19){entries}")
        expected["1.0.99.97.0.255"] = len(failures)
        for index, (end, seconds) in enumerate(failures, 1):
            expected[f"power_failure_{index}_end"] = end.replace(microsecond=0)
            expected[f"power_failure_{index}_duration"] = seconds
    order = draw(st.permutations(range(len(lines))))
    body = f"/{maker}5{ident}\r\n\r\n" + "".join(lines[i] + "\r\n" for i in order) + "!"
    data = body.encode("ascii")
    crc = draw(st.booleans()) if with_crc is None else with_crc
    data += (f"{crc16_arc(data):04X}" if crc else "").encode("ascii") + b"\r\n"
    return Telegram(data, expected)
