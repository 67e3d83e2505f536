"""Fault soak with real components: a socat pty unplugged and replugged, ser2net restarted, a slow consumer.

Frames stream all the while: real meter pushes made distinct by a sequence number (NumberedFrames), written in
random chunks. What "connected" means, and so which frames must arrive, is stated on each test.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
from _processes import (
    NumberedFrames,
    Ser2net,
    SocatPtyPair,
    free_tcp_port,
    open_fds,
    random_chunks,
    write_paced,
)

from amshan.meter_connection import (
    ConnectionManager,
    ExponentialBackOff,
    MeterTransportProtocol,
    SmartMeterBaseProtocol,
)
from amshan.serial_connection_factory import create_serial_frame_content_connection
from amshan.tcp_connection_factory import create_tcp_frame_content_connection

SEED = 7007
SERIAL_CYCLES = 100
SER2NET_RESTARTS = 24
TIMEOUT_SEC = 5.0

BOUNDARY, MID_FRAME, ABRUPT, CLOSE = "boundary", "mid-frame", "abrupt", "close()"


@dataclass
class Connection:
    """What the test wrote and received over one connection of the manager."""

    protocol: SmartMeterBaseProtocol
    unplug: str
    quiet_start: bool
    first: int = -1  # the first frame that must arrive ("connected" from here)
    last: int = -1  # the last frame written whole before the unplug
    partial: int | None = None  # the frame cut short by a mid-frame unplug: it must never arrive
    received: list[int] = field(default_factory=list)

    def describe(self) -> str:
        """Say what the test knows of this connection, for a failure message."""
        protocol = self.protocol
        return (
            f"{self.unplug} unplug, {'quiet' if self.quiet_start else 'streaming'} start, frames {self.first}"
            f"..{self.last} owed, received {self.received}; protocol: {protocol.frames_received} frames,"
            f" {protocol.invalid_frames} invalid, {protocol.discarded_bytes} octets discarded"
        )


class Soak:
    """Writes numbered frames, collects what the manager queues, and checks it connection by connection."""

    def __init__(self, rng: random.Random) -> None:
        self.frames = NumberedFrames()
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.rng = rng
        self.next = 0  # number of the next frame to write
        self.connections: list[Connection] = []
        self.transports: list[asyncio.BaseTransport] = []
        self.foreign: list[bytes] = []  # received contents that no numbered frame produced

    def recorded(self, connect: Callable[[], Any]) -> Callable[[], Any]:
        """Wrap a connection factory so that every transport it makes is remembered (checked at the end)."""

        async def factory() -> MeterTransportProtocol:
            connection: MeterTransportProtocol = await connect()
            self.transports.append(connection[0])
            return connection

        return factory

    async def write_frame(self, fd: int) -> int:
        """Write the next numbered frame in random chunks; return its number."""
        number = self.next
        self.next += 1
        await write_paced(fd, random_chunks(self.frames.frame(number), self.rng), timeout=TIMEOUT_SEC)
        return number

    async def write_partial(self, fd: int) -> tuple[int, int]:
        """Write the first 1..n-1 octets of the next frame; return its number and the octets written."""
        number = self.next
        self.next += 1
        frame = self.frames.frame(number)
        size = self.rng.randint(1, len(frame) - 1)
        await write_paced(fd, random_chunks(frame[:size], self.rng), timeout=TIMEOUT_SEC)
        return number, size

    def collect(self) -> None:
        """Move what the queue holds to the current connection's record."""
        while not self.queue.empty():
            content = self.queue.get_nowait()
            number = self.frames.number(content)
            if content == self.frames.message(number) and number < self.next:
                self.connections[-1].received.append(number)
            else:
                self.foreign.append(content)

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        """Collect until predicate holds; fail after TIMEOUT_SEC saying what was awaited."""
        deadline = time.monotonic() + TIMEOUT_SEC
        while True:
            self.collect()
            if predicate():
                return
            assert time.monotonic() < deadline, f"gave up after {TIMEOUT_SEC} s waiting for {what}"
            await asyncio.sleep(0.002)

    async def received_up_to(self, number: int) -> None:
        """Wait until frame number (or a later one) has arrived."""
        received = self.connections[-1].received
        await self.until(lambda: bool(received) and received[-1] >= number, f"frame {number} to arrive")

    async def stream(self, fd: int, count: int) -> None:
        """Write count frames, up to a millisecond apart, while the connection reads them."""
        connection = self.connections[-1]
        for _ in range(count):
            connection.last = await self.write_frame(fd)
            self.collect()
            await asyncio.sleep(self.rng.uniform(0, 0.001))

    async def wait_buffered(self, protocol: SmartMeterBaseProtocol, size: int) -> None:
        """Wait until the protocol's frame reader holds the size octets of a cut frame."""
        reader = protocol._frame_reader  # the test's precondition only: the library need not expose it
        await self.until(lambda: reader.buffered_bytes >= size, f"{size} octets of a cut frame to be read")

    async def serve(self, fd: int) -> None:
        """Stream 4 to 24 frames over the current connection, then ready it for its kind of unplug."""
        connection = self.connections[-1]
        await self.stream(fd, self.rng.randint(4, 24))
        if connection.unplug != ABRUPT:
            await self.received_up_to(connection.last)
        if connection.unplug == MID_FRAME:
            connection.partial, size = await self.write_partial(fd)
            await self.wait_buffered(connection.protocol, size)

    def check(self) -> dict[str, int]:
        """Check every connection's deliveries; return the figures."""
        assert not self.foreign, f"{len(self.foreign)} messages no written frame made: {self.foreign[:3]}"
        everything = [n for c in self.connections for n in c.received]
        assert everything == sorted(set(everything)), "a frame arrived twice or out of order"
        cut = {c.partial for c in self.connections if c.partial is not None}
        assert not cut & set(everything), f"cut frames surfaced as messages: {sorted(cut & set(everything))}"
        arrived_anywhere = set(everything)
        owed = lost = in_flight = 0
        for index, connection in enumerate(self.connections):
            assert connection.first >= 0, f"connection {index} never became connected"
            window = list(range(connection.first, connection.last + 1))
            arrived = [n for n in window if n in arrived_anywhere]
            owed += len(window)
            if connection.unplug == ABRUPT:
                # An unbroken run from the first frame arrives on this connection. What the killed process
                # (socat, ser2net) or the hung-up pty still held is lost or reaches the next connection first.
                own = [n for n in connection.received if n >= connection.first]
                assert own == window[: len(own)], (
                    f"connection {index} lost frames before its last: {connection.describe()}"
                )
                in_flight += len(window) - len(arrived)
            else:
                missing = sorted(set(window) - set(arrived))
                lost += len(missing)
                assert not missing, f"connection {index} lost frames {missing[:10]}: {connection.describe()}"
            if connection.quiet_start:  # its stream began at a frame boundary: nothing to skip, nothing bad
                assert connection.protocol.invalid_frames == 0, f"connection {index}: invalid frames"
                assert connection.protocol.discarded_bytes == 0, f"connection {index}: discarded bytes"
        return {
            "connections": len(self.connections),
            "frames written": self.next,
            "frames written while connected": owed,
            "frames received": len(everything),
            "lost": lost,
            "in flight at an abrupt unplug": in_flight,
            "duplicates": len(everything) - len(set(everything)),
        }


def new_protocol(
    manager: ConnectionManager, previous: SmartMeterBaseProtocol | None
) -> SmartMeterBaseProtocol | None:
    """Return the manager's protocol when it is a new one whose transport has opened, else None."""
    connection = manager.connection
    if connection is None or connection[1] is previous or connection[1].last_frame_time is None:
        return None
    return connection[1]


def quick_manager(factory: Callable[[], Any]) -> ConnectionManager:
    """Return a manager that retries within 5-20 ms and, since every loss trips its breaker, waits 10 ms."""
    return ConnectionManager(
        factory,
        back_off_connect_error=ExponentialBackOff(initial_delay_sec=0.005, max_delay_sec=0.02),
        connection_lost_back_off_sleep_sec=0.01,
    )


def unplug_kind(cycle: int, cycles: int) -> str:
    """Return how connection number cycle ends: the three unplugs in turn, close() for the last one."""
    return CLOSE if cycle == cycles else (BOUNDARY, MID_FRAME, ABRUPT)[cycle % 3]


def report(title: str, figures: dict[str, int], started: float) -> None:
    figures_text = ", ".join(f"{k} {v}" for k, v in figures.items())
    print(f"{title}: {figures_text}, {time.monotonic() - started:.1f} s")


async def assert_nothing_left(
    manager: ConnectionManager,
    loop_task: asyncio.Future[None],
    soak: Soak,
    tasks_before: set[asyncio.Task[Any]],
) -> None:
    """close() ends the connect loop and leaves no task and no open transport behind."""
    manager.close()
    await asyncio.wait_for(loop_task, TIMEOUT_SEC)
    assert loop_task.result() is None
    if soak.connections:
        done = soak.connections[-1].protocol.done
        assert isinstance(done, asyncio.Future) and done.done(), "close() left the last connection up"
    assert asyncio.all_tasks() == tasks_before
    assert manager.connection is None
    open_transports = [t for t in soak.transports if not t.is_closing()]
    assert not open_transports, open_transports
    assert len(soak.transports) == len(soak.connections)


async def test_socat_unplugged_and_replugged_100_times_while_frames_stream(tmp_path: Path) -> None:
    """Every frame whose first octet was written after the new port had opened arrives once, in order.

    "Connected" starts when the manager's new protocol has seen connection_made: pyserial has opened the
    port and flushed what was waiting, so everything written from then on reaches the reader. It ends at the
    unplug: socat is killed after the reader has everything written (boundary), after it also holds the first
    octets of a frame cut short (mid-frame: that frame must never surface), or at once while frames are in
    flight (abrupt: what the reader got must be an unbroken run from the first frame; the tail still in
    socat's buffers or the hung-up pty is reported, not owed). Half the replugs happen while frames stream
    (the port opens mid-frame); in the other half writing waits for the port, so the new reader must see no
    garbage at all, even after a cut frame.
    """
    started = time.monotonic()
    cable = SocatPtyPair(tmp_path)
    soak = Soak(random.Random(SEED))
    tasks_before = asyncio.all_tasks()
    fds_before = open_fds()
    manager = quick_manager(
        soak.recorded(
            lambda: create_serial_frame_content_connection(
                soak.queue, None, url=str(cable.device), baudrate=2400
            )
        )
    )
    loop_task = asyncio.ensure_future(manager.connect_loop())
    protocol: SmartMeterBaseProtocol | None = None
    try:
        for cycle in range(SERIAL_CYCLES + 1):  # the last connection is still up when close() is called
            cable.start()
            fd = cable.feeder_fd()
            quiet = cycle % 2 == 1
            previous, deadline = protocol, time.monotonic() + TIMEOUT_SEC
            while (protocol := new_protocol(manager, previous)) is None:
                assert time.monotonic() < deadline, f"cycle {cycle}: no new connection"
                if not quiet:
                    await soak.write_frame(fd)  # streams on while the manager reconnects
                await asyncio.sleep(0.001)
            unplug = unplug_kind(cycle, SERIAL_CYCLES)
            connection = Connection(protocol, unplug, quiet, first=soak.next)
            soak.connections.append(connection)
            await soak.serve(fd)
            if unplug == CLOSE:
                break
            cable.stop()
            await asyncio.wait_for(protocol.done, TIMEOUT_SEC)
            soak.collect()
        figures = soak.check()
        assert manager.connection_count == SERIAL_CYCLES + 1
    finally:
        await assert_nothing_left(manager, loop_task, soak, tasks_before)
        cable.stop()
    assert all(t.serial is None for t in soak.transports)  # pyserial-asyncio drops its port once closed
    assert open_fds() == fds_before
    report("socat soak", figures, started)


async def test_ser2net_restarted_24_times_while_frames_stream(tmp_path: Path) -> None:
    """Every frame from a connection's first delivered frame up to the restart arrives once, in order.

    ser2net opens (and may flush) the serial device only when the manager's TCP connection arrives, at a
    moment the test cannot see, so "connected" starts at the first frame the new connection delivers. It ends
    when ser2net is stopped: after the reader has everything written (boundary), after it also holds the first
    octets of a cut frame (mid-frame: that frame must never surface), or at once while frames are in flight
    (abrupt: an unbroken run from the first frame must arrive; what ser2net took down with it is reported).
    Frames are written all along, while ser2net is down too.
    """
    started = time.monotonic()
    cable = SocatPtyPair(tmp_path)
    bridge = Ser2net(tmp_path, cable.device, free_tcp_port())
    soak = Soak(random.Random(SEED + 1))
    cable.start()
    fd = cable.feeder_fd()
    tasks_before = asyncio.all_tasks()
    fds_before = open_fds()
    manager = quick_manager(
        soak.recorded(lambda: create_tcp_frame_content_connection(soak.queue, None, "127.0.0.1", bridge.port))
    )
    loop_task = asyncio.ensure_future(manager.connect_loop())
    protocol: SmartMeterBaseProtocol | None = None
    try:
        for cycle in range(SER2NET_RESTARTS + 1):  # the last connection is still up when close() is called
            bridge.start()
            previous, deadline = protocol, time.monotonic() + TIMEOUT_SEC
            while (protocol := new_protocol(manager, previous)) is None:
                assert time.monotonic() < deadline, f"restart {cycle}: no new connection"
                await soak.write_frame(fd)  # streams on while ser2net is down and the manager reconnects
                await asyncio.sleep(0.002)
            unplug = unplug_kind(cycle, SER2NET_RESTARTS)
            connection = Connection(protocol, unplug, quiet_start=False)
            soak.connections.append(connection)
            while not connection.received:
                assert time.monotonic() < deadline, f"restart {cycle}: nothing came through ser2net"
                await soak.write_frame(fd)
                await asyncio.sleep(0.002)
                soak.collect()
            connection.first = connection.received[0]
            connection.last = soak.next - 1
            await soak.serve(fd)
            if unplug == CLOSE:
                break
            bridge.stop()
            await asyncio.wait_for(protocol.done, TIMEOUT_SEC)
            soak.collect()
        figures = soak.check()
        assert manager.connection_count == SER2NET_RESTARTS + 1
    finally:
        await assert_nothing_left(manager, loop_task, soak, tasks_before)
        bridge.stop()
    assert all(t.get_extra_info("socket").fileno() == -1 for t in soak.transports)
    assert open_fds() == fds_before
    cable.stop()
    report("ser2net soak", figures, started)


async def test_slow_consumer_bounded_queue_counts_and_reports_drops_then_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody reads a queue of 8 while 3000 frames stream through a pty: it holds 8, the rest is counted.

    The cable is replugged halfway, so the drops span two connections. They are reported by a few
    rate-limited warnings whose counts add up to the manager's total: at connection loss for the first, and
    when the queue has room again for the second. Once the consumer reads again, new frames arrive again.
    """
    size, flood = 8, 3000
    interval = 0.25
    monkeypatch.setattr(SmartMeterBaseProtocol, "LOG_INTERVAL_SEC", interval)
    cable = SocatPtyPair(tmp_path)
    frames = NumberedFrames()
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=size)
    rng = random.Random(SEED + 2)
    manager = quick_manager(
        lambda: create_serial_frame_content_connection(queue, None, url=str(cable.device), baudrate=2400)
    )
    loop_task = asyncio.ensure_future(manager.connect_loop())
    protocols: list[SmartMeterBaseProtocol] = []
    caplog.set_level(logging.WARNING, logger="amshan.meter_connection")
    started = time.monotonic()

    def reported() -> int:
        return sum(int(r.args[2]) for r in caplog.records if "queue full" in r.getMessage())  # type: ignore[index]

    try:
        for half in range(2):
            if half:
                cable.stop()  # unplugged halfway: the second half goes to a new connection
                await asyncio.wait_for(protocols[-1].done, TIMEOUT_SEC)
            cable.start()
            deadline = time.monotonic() + TIMEOUT_SEC
            while (protocol := new_protocol(manager, protocols[-1] if protocols else None)) is None:
                assert time.monotonic() < deadline, "no connection"
                await asyncio.sleep(0.001)
            protocols.append(protocol)
            reported_before = reported()
            tracemalloc.start()
            numbers = range(half * flood // 2, (half + 1) * flood // 2)
            for number in numbers:
                await write_paced(cable.feeder_fd(), random_chunks(frames.frame(number), rng), TIMEOUT_SEC)
                assert queue.qsize() <= size
            deadline = time.monotonic() + TIMEOUT_SEC
            while protocol.frames_received < len(numbers):
                assert time.monotonic() < deadline, f"{protocol.frames_received} of {len(numbers)} read"
                await asyncio.sleep(0.005)
            growth = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(f"slow consumer, half {half}: {len(numbers)} frames, peak traced memory {growth} B")
            assert growth < 100_000  # the messages of one half alone take some 300 kB
            assert manager.queue_full_drops == (half + 1) * flood // 2 - size
            assert reported() > reported_before  # warned while dropping, not only afterwards
        assert [p.queue_full_drops for p in protocols] == [flood // 2 - size, flood // 2]
        unreported = manager.queue_full_drops - reported()  # the latest drops, held back by the rate limit
        held = [frames.number(queue.get_nowait()) for _ in range(size)]
        assert held == list(range(size))  # the newest are dropped: the queue holds the oldest
        await asyncio.sleep(interval)
        caught_up = list(range(flood, flood + 20))
        got = []
        for number in caught_up:  # the consumer keeps up now: one message read per frame written
            await write_paced(cable.feeder_fd(), random_chunks(frames.frame(number), rng), TIMEOUT_SEC)
            got.append(frames.number(await asyncio.wait_for(queue.get(), TIMEOUT_SEC)))
        assert got == caught_up
        assert reported() == manager.queue_full_drops == flood - size  # reported once there was room again
        print(f"slow consumer: {unreported} drops reported when the queue had room again")
    finally:
        tracemalloc.stop()
        manager.close()
        await asyncio.wait_for(loop_task, TIMEOUT_SEC)
        cable.stop()
    warnings = [r for r in caplog.records if "queue full" in r.getMessage()]
    print(f"slow consumer: {manager.queue_full_drops} drops reported in {len(warnings)} warnings")
    assert reported() == manager.queue_full_drops
    # Rate-limited: one at the first drop and one per interval a connection, plus one as each ends.
    assert 2 <= len(warnings) <= (time.monotonic() - started) / interval + 2 * len(protocols) + 1
