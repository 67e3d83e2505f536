"""Prometheus metrics of a MeterHub: each numeric field per meter, cumulative registers as totals, counters.

Collected at scrape time from the hub's state (nothing is kept twice): a gauge ``amshan_<field>_<unit>``
per numeric field labelled ``meter_id`` and ``manufacturer``, the energy registers (Wh, varh) as counters
``..._total``, and the source's frame, message, error and reconnect counters.
"""

from __future__ import annotations

import re
from typing import Dict, Iterator, Union

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from amshan.obis_map import FIELD_UNITS, NEK_HAN_FIELD_METER_MANUFACTURER
from amshan.web.history import numeric_values
from amshan.web.hub import MeterHub

__all__ = ["HubCollector", "metric_name"]

_UNIT_SUFFIX = {
    "W": "watts",
    "var": "var",
    "A": "amperes",
    "V": "volts",
    "Wh": "watt_hours",
    "varh": "var_hours",
}
_CUMULATIVE_UNITS = frozenset(("Wh", "varh"))
_NOT_A_NAME_CHAR = re.compile(r"[^a-zA-Z0-9_]")
_LABELS = ["meter_id", "manufacturer"]
_SOURCE_COUNTERS = (
    ("frames", "valid_frames", "Frames whose checks passed"),
    ("invalid_frames", "invalid_frames", "Frame candidates that failed a check"),
    ("messages", "messages", "Whole messages reassembled from frames"),
    ("decoded_messages", "decoded", "Messages decoded into a dictionary"),
    ("undecodable_messages", "undecodable", "Whole messages no decoder took"),
    ("reconnects", "reconnects", "Connections to the source after the first"),
    ("event_clients_dropped", "event_clients_dropped", "Event streams dropped for falling behind"),
)


def metric_name(field: str) -> str:
    """Return the Prometheus name of a field: ``amshan_`` + the field (or its OBIS code) + its unit."""
    unit = FIELD_UNITS.get(field)
    base = field if not field[:1].isdigit() else "obis_" + field
    name = "amshan_" + _NOT_A_NAME_CHAR.sub("_", base)
    return f"{name}_{_UNIT_SUFFIX[unit]}" if unit in _UNIT_SUFFIX else name


class HubCollector(Collector):
    """Collect a hub's metrics at each scrape."""

    def __init__(self, hub: MeterHub) -> None:
        """Collect from ``hub``."""
        self._hub = hub

    def collect(self) -> Iterator[Metric]:
        """Yield the per-meter field metrics, the meter info and the source's counters."""
        families: Dict[str, Union[GaugeMetricFamily, CounterMetricFamily]] = {}
        info = GaugeMetricFamily(
            "amshan_meter_info", "The meter's identity (value 1)", labels=[*_LABELS, "meter_type"]
        )
        seen = GaugeMetricFamily(
            "amshan_meter_last_message_timestamp_seconds", "Time of the meter's last message", labels=_LABELS
        )
        phases = GaugeMetricFamily(
            "amshan_meter_phases", "Phases the meter reports values for", labels=_LABELS
        )
        for state in list(self._hub.history.meters.values()):
            labels = [state.key, str(state.values.get(NEK_HAN_FIELD_METER_MANUFACTURER) or "")]
            info.add_metric([*labels, str(state.info()["meter_type"] or "")], 1)
            seen.add_metric(labels, state.updated)
            phases.add_metric(labels, state.phases)
            for field, value in numeric_values(state.values).items():
                name = metric_name(field)
                family = families.get(name)
                if family is None:
                    unit = FIELD_UNITS.get(field, "")
                    documentation = f"{field} ({unit})" if unit else field
                    if unit in _CUMULATIVE_UNITS:
                        family = CounterMetricFamily(
                            name, "Cumulative register " + documentation, labels=_LABELS
                        )
                    else:
                        family = GaugeMetricFamily(name, "Latest " + documentation, labels=_LABELS)
                    families[name] = family
                family.add_metric(labels, value)
        yield info
        yield seen
        yield phases
        yield from families.values()
        health = self._hub.health()
        for name, key, documentation in _SOURCE_COUNTERS:
            counter = CounterMetricFamily("amshan_" + name, documentation)
            counter.add_metric([], health[key])
            yield counter
        clients = GaugeMetricFamily("amshan_event_clients", "Event streams open now")
        clients.add_metric([], health["event_clients"])
        yield clients
        connected = GaugeMetricFamily("amshan_source_connected", "1 while a live source is connected")
        connected.add_metric([], 1 if health["connected"] else 0)
        yield connected
