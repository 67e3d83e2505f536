"""50 event-stream clients on `amshan serve` while a meter sends 100 messages a second: the ones that read get
every update, the ones that stop reading are dropped, and the server's memory stays bounded."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import List

import aiohttp
from _web import ServeProcess, ThreadedSimulator

from amshan.simulator import bundled_frames

FAST_CLIENTS = 30
SLOW_CLIENTS = 20
RATE_INTERVAL = 0.01  # 100 messages a second
RUN_SECONDS = 15.0
DEADLINE = 60.0


def rss_kib(pid: int) -> int:
    """Return a process's resident memory in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


class FastClient:
    """Reads the event stream as fast as it comes and records each event's id."""

    def __init__(self) -> None:
        self.ids: List[int] = []
        self.connected = asyncio.Event()

    async def run(self, session: aiohttp.ClientSession, url: str) -> None:
        async with session.get(url + "api/events", timeout=aiohttp.ClientTimeout(total=None)) as response:
            assert response.status == 200
            self.connected.set()
            async for line in response.content:
                if line.startswith(b"id: "):
                    self.ids.append(int(line[4:]))


def stalled_client(port: int) -> socket.socket:
    """Open an event stream and never read it (a tiny receive buffer, so the server notices soon)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    return sock


async def health(session: aiohttp.ClientSession, url: str) -> dict:  # type: ignore[type-arg]
    async with session.get(url + "api/health") as response:
        return await response.json()  # type: ignore[no-any-return]


async def poll(session: aiohttp.ClientSession, url: str, what: str, check: object) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + DEADLINE
    while True:
        state = await health(session, url)
        if check(state):  # type: ignore[operator]
            return state
        assert time.monotonic() < deadline, f"gave up waiting for {what}: {state}"
        await asyncio.sleep(0.2)


async def test_fifty_event_clients_at_100_messages_a_second(tmp_path: Path) -> None:
    simulator = ThreadedSimulator(bundled_frames("kamstrup"), RATE_INTERVAL).start()
    server = ServeProcess(tmp_path)
    sockets: List[socket.socket] = []
    tasks: List[asyncio.Future[None]] = []
    try:
        server.start(simulator.address)
        url = server.url
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            fast = [FastClient() for _ in range(FAST_CLIENTS)]
            tasks = [asyncio.ensure_future(client.run(session, url)) for client in fast]
            await asyncio.wait_for(asyncio.gather(*(client.connected.wait() for client in fast)), DEADLINE)
            sockets = [stalled_client(server.port) for _ in range(SLOW_CLIENTS)]
            await poll(
                session, url, "50 clients", lambda s: s["event_clients"] + s["event_clients_dropped"] >= 50
            )
            start = await health(session, url)
            baseline = rss_kib(server.pid())
            peak = baseline
            began = time.monotonic()
            while time.monotonic() - began < RUN_SECONDS:
                await asyncio.sleep(0.5)
                peak = max(peak, rss_kib(server.pid()))
            dropped = await poll(
                session,
                url,
                "the stalled clients to be dropped",
                lambda s: s["event_clients_dropped"] >= SLOW_CLIENTS,
            )
            ended = time.monotonic()
            simulator.stop()  # no more messages: every fast client must now get the last one
            last = -1
            deadline = time.monotonic() + DEADLINE
            while last != (last := (await health(session, url))["decoded"]):
                assert time.monotonic() < deadline, "the source did not go quiet"
                await asyncio.sleep(1.0)
            while any(not client.ids or client.ids[-1] < last for client in fast):
                assert time.monotonic() < deadline, "a fast client did not get the last update"
                await asyncio.sleep(0.1)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sock in sockets:
            sock.close()
        simulator.stop()
        server.stop()
    rate = (dropped["decoded"] - start["decoded"]) / (ended - began)
    assert rate > 50, f"the meter sent only {rate:.0f} messages a second"
    assert dropped["event_clients_dropped"] == SLOW_CLIENTS and dropped["event_clients"] == FAST_CLIENTS
    for client in fast:
        first = client.ids[0]
        assert client.ids == list(range(first, last + 1)), "a fast client missed an update"
    growth = (peak - baseline) / 1024
    print(f"rate {rate:.0f}/s, RSS {baseline / 1024:.1f} MiB -> peak {peak / 1024:.1f} MiB, last {last}")
    assert growth < 40, f"the server grew by {growth:.1f} MiB while stalled clients held their streams"
