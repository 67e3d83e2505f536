"""A simulated meter: a TCP server that pushes real captured HAN frames, like a meter behind ser2net.

It serves the quick start (``amshan demo``), tests, and people developing against amshan without a meter
(``amshan simulate``). The frames are real Aidon, Kaifa and Kamstrup captures from Norway and real P1
telegrams from Sweden, the Netherlands and Belgium, bundled as package data (``amshan/data/*.txt``, one HDLC
frame or P1 telegram per line as hex); every client gets its own replay from the first frame, at a
configurable (accelerated) cadence.  Two ciphered streams need keys, which ``bundled_keys``
gives: ``dk`` (Danish Kamstrup in HDLC, SC 0x30, corpus plaintexts ciphered with demo keys) and ``at``
(Austrian M-Bus, SC 0x20, the official Netz NOE example and its published key); each line is one message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Sequence
from importlib import resources
from types import TracebackType

_LOGGER = logging.getLogger(__name__)

METERS = ("aidon", "kaifa", "kamstrup", "dk", "at")
PLAIN_METERS = ("aidon", "kaifa", "kamstrup")  # what "all" interleaves: they need no keys
P1_METERS = ("p1-se", "p1-nl", "p1-be")  # P1 telegrams: what "p1" interleaves
GROUPS = {"all": PLAIN_METERS, "p1": P1_METERS}
DEFAULT_INTERVAL = 1.0
METER_NAMES = {
    "all": "Aidon, Kaifa and Kamstrup",
    "aidon": "Aidon",
    "kaifa": "Kaifa",
    "kamstrup": "Kamstrup",
    "dk": "ciphered Danish Kamstrup (HDLC)",
    "at": "ciphered Austrian M-Bus",
    "p1": "Swedish, Dutch and Belgian P1",
    "p1-se": "Swedish P1",
    "p1-nl": "Dutch P1",
    "p1-be": "Belgian P1",
}
"""What each choice of ``--meter`` sends, for people."""
_KEYS = {  # public keys of the ciphered streams: (encryption key, authentication key)
    "dk": ("000102030405060708090a0b0c0d0e0f", "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf"),  # DLMS demo keys
    "at": ("36c66639e48a8ca4d6bc8b282a793bbb", None),  # Netz NOE's published example key (no AK)
}


def parse_hex_line(line: str) -> bytes | None:
    """Return the bytes of one line of hex text (spaces and ``:`` allowed), None for a blank or ``#`` line.

    Raises ValueError when the line holds anything but hex digits in pairs.
    """
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    return bytes.fromhex(text.replace(":", " "))


def bundled_keys(meter: str) -> tuple[bytes | None, bytes | None]:
    """Return the (public) encryption and authentication keys of a bundled stream; (None, None) if plain."""
    encryption_key, authentication_key = _KEYS.get(meter, (None, None))
    return (
        None if encryption_key is None else bytes.fromhex(encryption_key),
        None if authentication_key is None else bytes.fromhex(authentication_key),
    )


def bundled_frames(meter: str = "all") -> list[bytes]:
    """Return the bundled frames of one meter (METERS, P1_METERS) or of a group ("all", "p1"), mixed."""
    if meter in GROUPS:
        lists = [bundled_frames(name) for name in GROUPS[meter]]
        return [frame for group in itertools.zip_longest(*lists) for frame in group if frame is not None]
    if meter not in METERS + P1_METERS:
        raise ValueError(
            f"expected a meter among {', '.join(METERS + P1_METERS)}, all or p1, found {meter!r}"
        )
    text = resources.files("amshan").joinpath(f"data/{meter}.txt").read_text(encoding="ascii")
    return [frame for frame in map(parse_hex_line, text.splitlines()) if frame is not None]


class MeterSimulator:
    """A TCP server on which every client receives the given frames, one every ``interval`` seconds.

    With ``repeat`` the frames play in a loop until the client leaves; without it the server closes the
    connection after the last frame. ``port=0`` picks a free port, readable from ``port`` once started.
    """

    def __init__(
        self,
        frames: Sequence[bytes],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        interval: float = DEFAULT_INTERVAL,
        repeat: bool = True,
    ) -> None:
        """Remember what to send and where to listen."""
        if not frames:
            raise ValueError("expected at least one frame to send, found none")
        self._frames = list(frames)
        self._host = host
        self._port = port
        self._interval = interval
        self._repeat = repeat
        self._server: asyncio.base_events.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._replayed: asyncio.Event | None = None  # made in start(): on Python 3.9 an Event binds to a loop
        self.clients_served = 0
        self.replays_done = 0  # replays that sent every frame (without repeat: connections served to the end)

    @property
    def port(self) -> int:
        """Return the TCP port the server listens on (after ``start()``)."""
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def host(self) -> str:
        """Return the address the server listens on."""
        return self._host

    async def start(self) -> None:
        """Start listening."""
        self._replayed = asyncio.Event()
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        _LOGGER.info("Simulated meter listening on %s port %d", self._host, self.port)

    async def wait_replayed(self) -> None:
        """Wait until a client has received every frame (only a replay without ``repeat`` ever ends)."""
        if self._replayed is None:
            raise RuntimeError("the simulator is not started")
        await self._replayed.wait()

    async def close(self) -> None:
        """Stop listening and end every client's replay."""
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> MeterSimulator:
        """Start the server for the ``async with`` block."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the server when the ``async with`` block ends."""
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Replay the frames to one client."""
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        self.clients_served += 1
        peer = writer.get_extra_info("peername")
        _LOGGER.info("Simulated meter: client %s connected", peer)
        frames = itertools.cycle(self._frames) if self._repeat else iter(self._frames)
        try:
            for index, frame in enumerate(frames):
                if index:
                    await asyncio.sleep(self._interval)
                writer.write(frame)
                await writer.drain()
            self.replays_done += 1
            if self._replayed is not None:
                self._replayed.set()
        except (ConnectionError, OSError) as error:
            _LOGGER.info("Simulated meter: client %s left (%s)", peer, error)
        except asyncio.CancelledError:  # close(): end this replay quietly (asyncio's stream callback
            pass  # reports a handler task that ends cancelled as an error)
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                await writer.wait_closed()
