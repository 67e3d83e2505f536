"""A simulated meter: a TCP server that pushes real captured HAN frames, like a meter behind ser2net.

It serves the quick start (``amshan demo``), tests, and people developing against amshan without a meter
(``amshan simulate``). The frames are real Aidon, Kaifa and Kamstrup captures from Norway, bundled as package
data (``amshan/data/*.txt``, one HDLC frame per line as hex); every client gets its own replay from the first
frame, at a configurable (accelerated) cadence.
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

METERS = ("aidon", "kaifa", "kamstrup")
DEFAULT_INTERVAL = 1.0


def parse_hex_line(line: str) -> bytes | None:
    """Return the bytes of one line of hex text (spaces and ``:`` allowed), None for a blank or ``#`` line.

    Raises ValueError when the line holds anything but hex digits in pairs.
    """
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    return bytes.fromhex(text.replace(":", " "))


def bundled_frames(meter: str = "all") -> list[bytes]:
    """Return the bundled frames of one meter (aidon, kaifa, kamstrup) or of all three, interleaved."""
    if meter == "all":
        lists = [bundled_frames(name) for name in METERS]
        return [frame for group in itertools.zip_longest(*lists) for frame in group if frame is not None]
    if meter not in METERS:
        raise ValueError(f"expected a meter among {', '.join(METERS)} or all, found {meter!r}")
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
