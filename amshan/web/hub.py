"""The server's state: one MeterReader for the source, the history, health counters and the event clients.

Bytes (or already decoded dictionaries) go in; each decoded message updates the history and is pushed, as
one serialized Server-Sent Event, to every connected page. A client whose bounded queue fills (it stopped
reading) is dropped, so a slow browser can never grow the server's memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime
from typing import Any, Callable, Dict, Mapping, Optional, Set, Union

from amshan._ratelimit import LogLimiter
from amshan.generic import ItemValue
from amshan.meter_connection import ConnectionManager
from amshan.obis_map import NEK_HAN_FIELD_METER_DATETIME
from amshan.reader import MeterReader
from amshan.web.history import ENERGY_FIELDS, HOUR, History, HistoryError, HistoryFile, MeterState

__all__ = ["EventClient", "MeterHub", "TooManyClients"]

_LOGGER = logging.getLogger(__name__)

CLIENT_QUEUE = 64  # events a page may fall behind before it is dropped
MAX_CLIENTS = 100  # event streams served at once; more are refused (503)
STALE_AFTER = 60.0  # a live source silent this long is reported stale


class TooManyClients(Exception):
    """Every event-stream slot is taken."""


class EventClient:
    """One connected event stream: a bounded queue of serialized events and a way to cut it off."""

    def __init__(self, abort: Callable[[], None], size: int = CLIENT_QUEUE) -> None:
        """Start with an empty queue; ``abort`` closes the client's connection when it falls behind."""
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=size)
        self.dropped = False  # it fell behind
        self.ended = False  # dropped, or the server is stopping
        self._abort = abort

    def offer(self, event: bytes) -> bool:
        """Queue one event; on a full queue drop the client (free its queue, close it) and return False."""
        if self.ended:
            return False
        try:
            self.queue.put_nowait(event)
            return True
        except asyncio.QueueFull:
            self.dropped = True
            self.close()
            return False

    def close(self) -> None:
        """End the stream: free the queue, wake the writer with an empty batch, cut the connection."""
        self.ended = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(b"")
        self._abort()

    async def next_batch(self) -> bytes:
        """Wait for the next event, then take every event already queued with it (one write for all)."""
        parts = [await self.queue.get()]
        while not self.queue.empty():
            parts.append(self.queue.get_nowait())
        return b"".join(parts)


class MeterHub:
    """Decode one source and keep what the page, the API and the metrics show.

    ``live`` sources (a meter now) stamp each message with the time it arrived; a recording stamps it with
    the meter's clock (the last clock seen for messages that carry none), so its history is drawn as it was.
    """

    def __init__(
        self,
        history: Union[History, HistoryFile],
        *,
        live: bool,
        source: str = "",
        reader: Optional[MeterReader] = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Serve ``history`` (in memory or kept in a file) for a live source or a recording.

        ``reader`` decodes the source's bytes (give one made with the meter's keys); ``link`` (set by whoever
        opens a live source) is the ConnectionManager whose connections the health reports.
        """
        self.store = history
        self.history = history.history if isinstance(history, HistoryFile) else history
        self.live = live
        self.source = source
        self.reader = reader if reader is not None else MeterReader()
        self.link: Optional[ConnectionManager] = None
        self.clients: Set[EventClient] = set()
        self.clients_dropped = 0
        self.sequence = 0
        self.last_received: Optional[float] = None
        self.started = clock()
        self._clock = clock
        self._meter_time: Optional[float] = None
        self._write_errors = LogLimiter()
        self._drop_log = LogLimiter()

    def feed(self, chunk: bytes) -> int:
        """Read the next bytes of the source; add every message they complete; return how many."""
        dictionaries = self.reader.read(chunk)
        for dictionary in dictionaries:
            self.add(dictionary)
        return len(dictionaries)

    def add(self, dictionary: Mapping[str, ItemValue]) -> MeterState:
        """Add one decoded dictionary to the history and push it to every page."""
        received = self._clock()
        self.last_received = received
        state = self.store.add(dictionary, self._time_of(dictionary, received))
        self.sequence += 1
        if self.clients:
            self.publish(self.event(state))
        return state

    def _time_of(self, dictionary: Mapping[str, ItemValue], received: float) -> float:
        """Return the time of a message: its arrival when live, else the meter's clock (or the last one)."""
        if self.live:
            return received
        clock = dictionary.get(NEK_HAN_FIELD_METER_DATETIME)
        if isinstance(clock, datetime):
            self._meter_time = clock.timestamp()  # a naive meter time is taken as this machine's local time
        return self._meter_time if self._meter_time is not None else received

    def event(self, state: MeterState) -> Dict[str, Any]:
        """Return the event of a meter's newest message: dictionary, meter, energy of the last two hours."""
        since = (int(state.updated // HOUR) - 1) * HOUR
        return {
            "seq": self.sequence,
            "meter": state.key,
            "t": state.updated,
            "dictionary": state.last,
            "info": state.info(),
            "energy": {series: state.energy(series, since) for series in ENERGY_FIELDS},
            "health": self.health(),
        }

    def publish(self, event: Mapping[str, Any]) -> None:
        """Serialize an event once and offer it to every client; drop the ones that fell behind."""
        data = f"id: {event['seq']}\nevent: message\ndata: {json.dumps(event)}\n\n".encode()
        for client in list(self.clients):
            if not client.offer(data):
                self.clients.discard(client)
                self.clients_dropped += 1
                if self._drop_log.ready():
                    _LOGGER.info(
                        "Dropped an event client that fell %d events behind (%d dropped so far)",
                        CLIENT_QUEUE,
                        self.clients_dropped,
                    )

    def subscribe(self, abort: Callable[[], None]) -> EventClient:
        """Register a new event client; raise TooManyClients when every slot is taken."""
        if len(self.clients) >= MAX_CLIENTS:
            raise TooManyClients(f"{MAX_CLIENTS} event streams are open")
        client = EventClient(abort)
        self.clients.add(client)
        return client

    def end_streams(self) -> None:
        """Close every event stream (the server is stopping)."""
        for client in list(self.clients):
            client.close()

    def unsubscribe(self, client: EventClient) -> None:
        """Forget a client whose stream ended."""
        self.clients.discard(client)

    def flush(self) -> None:
        """Write queued history to its file (if any); a failing file is logged (rate-limited), not fatal."""
        if isinstance(self.store, HistoryFile):
            try:
                self.store.flush()
            except HistoryError as error:
                if self._write_errors.ready():
                    _LOGGER.error("%s", error)

    def close(self) -> None:
        """Write and close the history file (if any)."""
        if isinstance(self.store, HistoryFile):
            try:
                self.store.close()
            except HistoryError as error:
                _LOGGER.error("%s", error)

    def health(self) -> Dict[str, Any]:
        """Return the source's health: age of the last message, frame and message counts, reconnects."""
        now = self._clock()
        stats = self.reader.stats
        link = self.link
        age = None if self.last_received is None else max(now - self.last_received, 0.0)
        if age is None:
            status = "waiting"
        elif self.live and age > STALE_AFTER:
            status = "stale"
        else:
            status = "ok"
        return {
            "status": status,
            "source": self.source,
            "live": self.live,
            "connected": link is not None and link.connection is not None,
            "now": now,
            "last_message_age": age,
            "bytes": stats.bytes_read,
            "valid_frames": stats.valid_frames,
            "invalid_frames": stats.invalid_frames,
            "messages": stats.messages,
            "decoded": self.sequence,
            "undecodable": stats.undecodable,
            "reconnects": 0 if link is None else max(link.connection_count - 1, 0),
            "event_clients": len(self.clients),
            "event_clients_dropped": self.clients_dropped,
            "started": self.started,
            "uptime": now - self.started,
        }
