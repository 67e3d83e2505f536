"""Frame protocols, back-off and ConnectionManager (real loopback TCP where a transport is needed)."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from typing import Any, Awaitable, Callable

import pytest
from _processes import complete_vectors, expected_messages, open_fd_count, random_chunks, vector_frames
from _support import corpus_frames

from amshan.hdlc import HdlcFrame, HdlcFrameReader
from amshan.meter_connection import (
    BackOffStrategy,
    ConnectionManager,
    ExponentialBackOff,
    MeterTransportProtocol,
    SmartMeterFrameContentProtocol,
    SmartMeterFrameProtocol,
    SmartMeterMessageProtocol,
    SmartMeterReadFrameProtocol,
)
from amshan.reader import MeterReader, ReadFrame
from amshan.simulator import MeterSimulator, bundled_frames, bundled_keys
from amshan.tcp_connection_factory import (
    create_tcp_frame_connection,
    create_tcp_frame_content_connection,
    create_tcp_message_connection,
)

LLC = bytes.fromhex("e6e700")
SEED = 20211201


def good_vectors() -> list[dict[str, Any]]:
    return complete_vectors(corpus_frames(layer="hdlc", valid=True))


def good_stream() -> tuple[bytes, list[bytes]]:
    vectors = good_vectors()
    return b"".join(bytes.fromhex(v["hex"]) for v in vectors), [
        m for v in vectors for m in expected_messages(v)
    ]


def first_message_frame() -> bytes:
    """A real single-frame meter push (Norwegian Aidon), as sent on the wire."""
    vector = next(
        v for v in good_vectors() if v["country"] == "NO" and v["meter"] == "aidon" and not v["frames"]
    )
    return bytes.fromhex(vector["hex"])


class FakeTransport(asyncio.BaseTransport):
    """Enough transport for driving a protocol by hand (connection_made needs one)."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("192.0.2.1", 3001) if name == "peername" else default


# --- back-off --------------------------------------------------------------------------------------


def test_exponential_back_off_doubles_from_one_second_up_to_sixty_and_resets() -> None:
    back_off = ExponentialBackOff()
    assert back_off.current_delay_sec == 0
    delays = []
    for _ in range(9):
        back_off.failure()
        delays.append(back_off.current_delay_sec)
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]  # the issue: 1, 2, 4 ... capped at 60 s
    back_off.reset()
    assert back_off.current_delay_sec == 0
    back_off.failure()
    assert back_off.current_delay_sec == 1


def test_exponential_back_off_numbers_are_configurable() -> None:
    back_off = ExponentialBackOff(initial_delay_sec=0.5, max_delay_sec=3)
    for want in (0.5, 1, 2, 3, 3):
        back_off.failure()
        assert back_off.current_delay_sec == want
    back_off.max_delay = 1  # the old attribute stays settable
    assert back_off.current_delay_sec == 1
    with pytest.raises(ValueError, match="positive"):
        ExponentialBackOff(initial_delay_sec=0)


# --- protocols -------------------------------------------------------------------------------------


async def test_content_protocol_delivers_each_corpus_message_once_whatever_the_chunking() -> None:
    data, want = good_stream()
    assert len(want) > 150
    for seed in range(SEED, SEED + 3):
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        protocol = SmartMeterFrameContentProtocol(queue)
        protocol.connection_made(FakeTransport())
        for chunk in random_chunks(data, random.Random(seed), largest=97):
            protocol.data_received(chunk)
        got = [queue.get_nowait() for _ in range(queue.qsize())]
        assert got == want, f"seed {seed}"
        assert protocol.invalid_frames == 0


async def test_content_protocol_joins_hdlc_segments_into_one_message() -> None:
    segmented = [v for v in good_vectors() if any(f[1] & 0x08 for f in vector_frames(v))]
    assert segmented, "the corpus has HDLC-segmented messages (Iskra AM550)"
    for vector in segmented:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        protocol = SmartMeterFrameContentProtocol(queue)
        protocol.connection_made(FakeTransport())
        protocol.data_received(bytes.fromhex(vector["hex"]))
        got = [queue.get_nowait() for _ in range(queue.qsize())]
        assert got == expected_messages(vector), vector["id"]
        assert len(got) < len(vector_frames(vector))


async def test_content_protocol_drops_a_broken_segment_sequence_and_keeps_the_next_message() -> None:
    vector = next(v for v in good_vectors() if len(vector_frames(v)) >= 3 and vector_frames(v)[0][1] & 0x08)
    frames = vector_frames(vector)
    frame = first_message_frame()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    protocol = SmartMeterFrameContentProtocol(queue)
    protocol.connection_made(FakeTransport())
    # first segment, then a corrupted middle segment (one bit of its information flipped), then the rest
    damaged = bytearray(frames[1])
    damaged[len(damaged) // 2] ^= 0x01
    protocol.data_received(frames[0] + bytes(damaged) + b"".join(frames[2:]) + frame)
    got = [queue.get_nowait() for _ in range(queue.qsize())]
    assert got == [information_of(frame)]
    assert protocol.invalid_frames == 1
    assert protocol.broken_messages == 1
    # the same message intact afterwards is delivered whole: nothing of the broken one is left over
    protocol.data_received(bytes.fromhex(vector["hex"]))
    assert queue.get_nowait() == expected_messages(vector)[0]


def information_of(frame: bytes) -> bytes:
    (message,) = expected_messages({"hex": frame.hex(), "frames": None})
    return message


async def test_content_protocol_survives_garbage_between_frames() -> None:
    """Corrupted corpus frames and random noise between real pushes: every push arrives, nothing raises."""
    rng = random.Random(SEED)
    pushes = [v for v in good_vectors() if all(m.startswith(LLC) for m in expected_messages(v))]
    bad = corpus_frames(layer="hdlc", valid=False)
    data = bytearray()
    want: list[bytes] = []
    for index, vector in enumerate(pushes):
        data += (
            bytes.fromhex(bad[index % len(bad)]["hex"]) if index % 2 else rng.randbytes(rng.randint(0, 40))
        )
        data += bytes.fromhex(vector["hex"])
        want += expected_messages(vector)
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    protocol = SmartMeterFrameContentProtocol(queue)
    protocol.connection_made(FakeTransport())
    for chunk in random_chunks(bytes(data), rng):
        protocol.data_received(chunk)
    got = [queue.get_nowait() for _ in range(queue.qsize())]
    missing = [m[:12].hex() for m in want if m not in got]
    assert not missing
    assert protocol.invalid_frames > 0
    assert protocol.discarded_bytes > 0


async def test_frame_protocol_queues_every_frame_valid_or_not() -> None:
    vectors = good_vectors()
    bad = corpus_frames(layer="hdlc", valid=False, meter="kaifa")
    corrupted = next(v for v in bad if v["checks"] == {"length": "ok", "fcs": "bad", "hcs": "ok"})
    queue: asyncio.Queue[HdlcFrame] = asyncio.Queue()
    protocol = SmartMeterFrameProtocol(queue)
    protocol.connection_made(FakeTransport())
    wire = [f for v in vectors for f in vector_frames(v)]
    wire.insert(5, bytes.fromhex(corrupted["hex"]))
    for chunk in random_chunks(b"".join(wire), random.Random(SEED)):
        protocol.data_received(chunk)
    got = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [f.frame_data for f in got] == [f[1:-1] for f in wire]
    assert [f.is_valid for f in got].count(False) == 1
    assert protocol.frames_received == len(wire) - 1


async def test_full_queue_drops_and_counts_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=2)
    protocol = SmartMeterFrameContentProtocol(queue)
    protocol.connection_made(FakeTransport())
    frame = first_message_frame()
    with caplog.at_level(logging.WARNING, logger="amshan.meter_connection"):
        for _ in range(50):
            protocol.data_received(frame)
    assert queue.qsize() == 2
    assert protocol.queue_full_drops == 48
    warnings = [r for r in caplog.records if "queue full" in r.getMessage()]
    assert len(warnings) == 1


async def test_garbage_is_summarised_at_debug_level_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    protocol = SmartMeterFrameContentProtocol(queue)
    protocol.connection_made(FakeTransport())
    rng = random.Random(SEED)
    with caplog.at_level(logging.DEBUG, logger="amshan.meter_connection"):
        for _ in range(200):
            protocol.data_received(rng.randbytes(50).replace(b"\x7e", b"\x00"))
        protocol.data_received(first_message_frame())
    summaries = [
        r for r in caplog.records if r.name == "amshan.meter_connection" and "noise bytes" in r.getMessage()
    ]
    assert len(summaries) == 1
    assert summaries[0].levelno == logging.DEBUG
    assert not [
        r for r in caplog.records if r.name == "amshan.meter_connection" and r.levelno >= logging.WARNING
    ]
    assert queue.get_nowait() == information_of(first_message_frame())
    assert protocol.discarded_bytes == 200 * 50


async def test_data_received_never_raises_even_when_handling_fails(caplog: pytest.LogCaptureFixture) -> None:
    class Failing(SmartMeterFrameProtocol):
        def frame_received(self, frame: HdlcFrame) -> None:
            raise RuntimeError("a subclass bug")

    queue: asyncio.Queue[HdlcFrame] = asyncio.Queue()
    protocol = Failing(queue)
    protocol.connection_made(FakeTransport())
    with caplog.at_level(logging.ERROR, logger="amshan.meter_connection"):
        for _ in range(10):
            protocol.data_received(first_message_frame())
    assert protocol.frames_received == 10
    assert len([r for r in caplog.records if "handling a received frame failed" in r.getMessage()]) == 1


async def test_data_received_never_raises_when_the_reader_fails(caplog: pytest.LogCaptureFixture) -> None:
    class BrokenReader(HdlcFrameReader):
        def read(self, data: bytes) -> list[HdlcFrame]:
            raise IndexError("a reader bug")

    queue: asyncio.Queue[bytes] = asyncio.Queue()
    protocol = SmartMeterFrameContentProtocol(queue, BrokenReader())
    protocol.connection_made(FakeTransport())
    with caplog.at_level(logging.ERROR, logger="amshan.meter_connection"):
        for _ in range(10):
            protocol.data_received(first_message_frame())
    assert queue.empty()
    assert len([r for r in caplog.records if "frame reader failed" in r.getMessage()]) == 1


async def test_done_completes_on_connection_lost() -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    protocol = SmartMeterFrameContentProtocol(queue)
    protocol.connection_made(FakeTransport())
    assert not asyncio.ensure_future(protocol.done).done()
    protocol.connection_lost(ConnectionResetError("peer reset"))
    await asyncio.wait_for(protocol.done, 1)


# --- ConnectionManager against a real loopback server ----------------------------------------------


class MeterServer:
    """A loopback TCP 'meter' that pushes frames on request and can drop or ignore its clients."""

    def __init__(self) -> None:
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.accepted = 0
        self.connected = asyncio.Event()

    async def start(self, port: int = 0) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        self.connected.set()
        await reader.read()  # until the client goes away

    async def wait_client(self, timeout: float = 5) -> asyncio.StreamWriter:
        await asyncio.wait_for(self.connected.wait(), timeout)
        self.connected.clear()
        return self.writers[-1]

    async def drop_clients(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    async def stop(self) -> None:
        await self.drop_clients()
        if self.server is not None:
            self.server.close()
            await asyncio.wait_for(self.server.wait_closed(), 5)
            self.server = None


@pytest.fixture
async def meter_server() -> Any:
    server = MeterServer()
    await server.start()
    yield server
    await server.stop()


async def run_until_closed(manager: ConnectionManager, task: asyncio.Task[None]) -> None:
    manager.close()
    await asyncio.wait_for(task, 5)


async def test_manager_accepts_the_old_readme_lambda_and_leaves_nothing_behind(
    meter_server: MeterServer,
) -> None:
    tasks_before = len(asyncio.all_tasks())
    fds_before = open_fd_count()
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    manager = ConnectionManager(
        lambda: create_tcp_frame_content_connection(queue, loop, "127.0.0.1", meter_server.port)
    )
    task = asyncio.ensure_future(manager.connect_loop())
    writer = await meter_server.wait_client()
    frame = first_message_frame()
    writer.write(frame)
    assert await asyncio.wait_for(queue.get(), 5) == information_of(frame)
    assert manager.connection is not None
    await run_until_closed(manager, task)
    assert manager.connection is None
    await meter_server.drop_clients()
    await wait_for_condition(  # the server's handler sees end-of-file and closes its socket
        lambda: len(asyncio.all_tasks()) == tasks_before and open_fd_count() == fds_before,
        5,
        lambda: f"tasks {len(asyncio.all_tasks())}/{tasks_before}, fds {open_fd_count()}/{fds_before}",
    )


async def test_manager_accepts_a_coroutine_function_and_a_partial(meter_server: MeterServer) -> None:
    queue: asyncio.Queue[HdlcFrame] = asyncio.Queue()

    async def factory() -> MeterTransportProtocol:
        return await create_tcp_frame_connection(queue, None, "127.0.0.1", meter_server.port)

    partial = functools.partial(create_tcp_frame_connection, queue, None, "127.0.0.1", meter_server.port)
    for connection_factory in (factory, partial):
        manager = ConnectionManager(connection_factory)
        task = asyncio.ensure_future(manager.connect_loop())
        writer = await meter_server.wait_client()
        writer.write(first_message_frame())
        assert (await asyncio.wait_for(queue.get(), 5)).is_valid
        await run_until_closed(manager, task)


def test_manager_rejects_what_cannot_connect() -> None:
    with pytest.raises(TypeError, match="callable"):
        ConnectionManager("tcp://127.0.0.1:1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="idle_timeout"):
        ConnectionManager(lambda: asyncio.sleep(0), idle_timeout=0)  # type: ignore[arg-type,return-value]


async def test_manager_raises_when_the_factory_returns_no_awaitable() -> None:
    manager = ConnectionManager(lambda: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="not an awaitable"):
        await asyncio.wait_for(manager.connect_loop(), 5)


async def test_connect_errors_back_off_exponentially_and_reset_on_success() -> None:
    server = MeterServer()
    port = await free_port_without_listener()
    attempts: list[float] = []
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    def factory() -> Awaitable[MeterTransportProtocol]:
        attempts.append(time.monotonic())
        return create_tcp_frame_content_connection(queue, None, "127.0.0.1", port)

    back_off = ExponentialBackOff(initial_delay_sec=0.05, max_delay_sec=0.2)
    manager = ConnectionManager(factory, back_off_connect_error=back_off)
    task = asyncio.ensure_future(manager.connect_loop())
    await wait_for_condition(lambda: len(attempts) >= 6, 5)
    await server.start(port)
    try:
        await server.wait_client()
        await wait_for_condition(lambda: manager.connection is not None, 2)  # the client side may lag
        gaps = [b - a for a, b in zip(attempts, attempts[1:])]
        # refused at once; then 0.05, 0.1, 0.2 (capped), 0.2 ... s between attempts
        for gap, want in zip(gaps, (0.05, 0.1, 0.2, 0.2, 0.2)):
            assert want <= gap < want + 0.3, f"{gap:.3f} s between attempts, not {want} to {want + 0.3} s"
        assert back_off.current_delay_sec == 0
        assert manager.connection_count == 1
    finally:
        await run_until_closed(manager, task)
        await server.stop()


async def free_port_without_listener() -> int:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()
    return port


async def wait_for_condition(
    condition: Callable[[], bool], timeout: float, measured: Callable[[], str] = lambda: "condition not met"
) -> None:
    """Poll condition to a deadline; on failure say what was measured."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"after {timeout} s: {measured()}"
        await asyncio.sleep(0.005)


async def test_lost_connection_reconnects_at_once_then_the_circuit_breaker_waits(
    meter_server: MeterServer,
) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    manager = ConnectionManager(
        lambda: create_tcp_frame_content_connection(queue, None, "127.0.0.1", meter_server.port),
        connection_lost_back_off_threshold=2,
        connection_lost_back_off_sleep_sec=0.6,
    )
    assert manager.connection_lost_back_off_threshold == 2
    task = asyncio.ensure_future(manager.connect_loop())
    try:
        await meter_server.wait_client()
        await meter_server.drop_clients()
        lost_at = time.monotonic()
        await meter_server.wait_client()
        first_reconnect = time.monotonic() - lost_at
        assert first_reconnect < 0.4, f"first loss: reconnected after {first_reconnect:.3f} s, not at once"
        await meter_server.drop_clients()
        lost_at = time.monotonic()
        await meter_server.wait_client()
        second_reconnect = time.monotonic() - lost_at
        # a second loss within 2 s: the circuit breaker's 0.6 s
        assert 0.6 <= second_reconnect < 1.5, f"second loss: reconnected after {second_reconnect:.3f} s"
        manager.connection_lost_back_off_sleep_sec = 0.1  # the old attribute names stay settable
        await meter_server.drop_clients()
        lost_at = time.monotonic()
        await meter_server.wait_client()
        third_reconnect = time.monotonic() - lost_at
        assert 0.1 <= third_reconnect < 0.5, f"third loss (0.1 s): reconnected after {third_reconnect:.3f} s"
    finally:
        await run_until_closed(manager, task)


async def test_idle_watchdog_reconnects_a_silent_connection_but_not_a_talking_one(
    meter_server: MeterServer,
) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    idle_timeout = 0.6  # six times the 0.1 s between frames: a loaded loop's stalls stay well inside it
    manager = ConnectionManager(
        lambda: create_tcp_frame_content_connection(queue, None, "127.0.0.1", meter_server.port),
        idle_timeout=idle_timeout,
        connection_lost_back_off_sleep_sec=0,
    )
    task = asyncio.ensure_future(manager.connect_loop())
    frame = first_message_frame()
    try:
        writer = await meter_server.wait_client()
        arrivals = []
        for _ in range(10):  # 1 s of frames every 0.1 s: no idle disconnect
            writer.write(frame)
            await asyncio.wait_for(queue.get(), 5)  # counted where it arrives, not assumed
            arrivals.append(time.monotonic())
            await asyncio.sleep(0.1)
        gaps = ", ".join(f"{b - a:.2f}" for a, b in zip(arrivals, arrivals[1:]))
        assert manager.idle_disconnects == 0, f"the watchdog cut a talking connection (gaps {gaps} s)"
        assert meter_server.accepted == 1
        assert manager.connection is not None
        silent_since = manager.connection[1].last_frame_time
        assert silent_since is not None
        await meter_server.wait_client()
        elapsed = time.monotonic() - silent_since
        assert idle_timeout <= elapsed < idle_timeout + 0.5, (
            f"idle_timeout {idle_timeout} s: reconnected {elapsed:.3f} s after the last frame"
        )
        assert manager.idle_disconnects == 1, f"{manager.idle_disconnects} idle disconnects, 1 expected"
    finally:
        await run_until_closed(manager, task)


async def test_garbage_does_not_keep_the_watchdog_quiet(meter_server: MeterServer) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    manager = ConnectionManager(
        lambda: create_tcp_frame_content_connection(queue, None, "127.0.0.1", meter_server.port),
        idle_timeout=0.3,
    )
    task = asyncio.ensure_future(manager.connect_loop())
    try:
        writer = await meter_server.wait_client()
        await wait_for_condition(lambda: manager.connection is not None, 2)
        assert manager.connection is not None
        started = manager.connection[1].last_frame_time  # connection_made
        assert started is not None
        while not manager.idle_disconnects:
            assert time.monotonic() - started < 2, "the watchdog did not fire"
            writer.write(bytes(range(0x7E)))  # noise, never a valid frame
            await asyncio.sleep(0.05)
        fired = time.monotonic() - started
        assert 0.3 <= fired < 1.0, f"idle_timeout 0.3 s: the watchdog fired {fired:.3f} s into the noise"
    finally:
        await run_until_closed(manager, task)


async def test_close_during_a_hanging_connect_returns_promptly_and_cancels_the_attempt() -> None:
    tasks_before = len(asyncio.all_tasks())
    started = asyncio.Event()

    async def hanging() -> MeterTransportProtocol:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    manager = ConnectionManager(hanging)
    task = asyncio.ensure_future(manager.connect_loop())
    await asyncio.wait_for(started.wait(), 1)
    began = time.monotonic()
    await run_until_closed(manager, task)
    took = time.monotonic() - began
    assert took < 0.5, f"close() took {took:.3f} s during a hanging connect"
    assert len(asyncio.all_tasks()) == tasks_before


async def test_close_during_back_off_returns_promptly() -> None:
    port = await free_port_without_listener()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    manager = ConnectionManager(lambda: create_tcp_frame_content_connection(queue, None, "127.0.0.1", port))
    task = asyncio.ensure_future(manager.connect_loop())
    await wait_for_condition(lambda: manager.back_off_connect_error.current_delay_sec == 1, 2)
    began = time.monotonic()
    await run_until_closed(manager, task)
    took = time.monotonic() - began
    assert took < 0.5, f"close() took {took:.3f} s during a 1 s back-off"


async def test_cancelling_connect_loop_closes_the_connection(meter_server: MeterServer) -> None:
    tasks_before = len(asyncio.all_tasks())
    fds_before = open_fd_count()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    manager = ConnectionManager(
        lambda: create_tcp_frame_content_connection(queue, None, "127.0.0.1", meter_server.port)
    )
    task = asyncio.ensure_future(manager.connect_loop())
    await meter_server.wait_client()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert manager.connection is None
    await meter_server.drop_clients()
    await wait_for_condition(  # the server's handler sees end-of-file and closes its socket
        lambda: len(asyncio.all_tasks()) == tasks_before and open_fd_count() == fds_before,
        5,
        lambda: f"tasks {len(asyncio.all_tasks())}/{tasks_before}, fds {open_fd_count()}/{fds_before}",
    )


async def test_a_custom_back_off_strategy_is_used() -> None:
    class Constant(BackOffStrategy):
        def __init__(self) -> None:
            self.failures = 0

        def failure(self) -> None:
            self.failures += 1

        def reset(self) -> None:
            self.failures = 0

        @property
        def current_delay_sec(self) -> float:
            return 0.02 if self.failures else 0

    port = await free_port_without_listener()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    strategy = Constant()
    manager = ConnectionManager(
        lambda: create_tcp_frame_content_connection(queue, None, "127.0.0.1", port),
        back_off_connect_error=strategy,
    )
    task = asyncio.ensure_future(manager.connect_loop())
    await wait_for_condition(lambda: strategy.failures >= 10, 2)
    await run_until_closed(manager, task)


async def test_close_before_start_returns_at_once_and_the_manager_can_run_again(
    meter_server: MeterServer,
) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    manager = ConnectionManager(
        lambda: create_tcp_frame_content_connection(queue, None, "127.0.0.1", meter_server.port)
    )
    manager.close()
    await asyncio.wait_for(manager.connect_loop(), 1)
    assert meter_server.accepted == 0
    task = asyncio.ensure_future(manager.connect_loop())
    await meter_server.wait_client()
    with pytest.raises(RuntimeError, match="already running"):
        await manager.connect_loop()
    await run_until_closed(manager, task)
    assert meter_server.accepted == 1


# --- the MeterReader protocols: any transport, keys ---------------------------------------------------


async def test_message_protocol_over_tcp_decrypts_each_message_of_the_simulated_meters() -> None:
    """Ciphered Danish (HDLC) and Austrian (M-Bus) streams through a real TCP connection and the factory."""
    for meter in ("dk", "at"):
        frames = bundled_frames(meter)
        ek, ak = bundled_keys(meter)
        expected = MeterReader(ek, ak).read(b"".join(frames))
        assert len(expected) == len(frames)
        async with MeterSimulator(frames, interval=0.001, repeat=False) as simulator:
            queue: asyncio.Queue[Any] = asyncio.Queue()
            transport, protocol = await create_tcp_message_connection(
                queue, None, simulator.host, simulator.port, encryption_key=ek, authentication_key=ak
            )
            try:
                got = [await asyncio.wait_for(queue.get(), 10) for _ in frames]
            finally:
                transport.close()
            await asyncio.wait_for(protocol.done, 10)
        assert got == expected
        assert protocol.frames_received == (2 if meter == "at" else 1) * len(frames)
        assert protocol.last_frame_time is not None


async def test_read_frame_protocol_queues_every_frame_with_its_message() -> None:
    frames = bundled_frames("at")[:2]  # two M-Bus frames per message
    queue: asyncio.Queue[ReadFrame] = asyncio.Queue()
    protocol = SmartMeterReadFrameProtocol(queue, *bundled_keys("at"))
    for chunk in random_chunks(b"garbage".join(frames), random.Random(5)):
        protocol.data_received(chunk)
    items = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [(i.transport, i.valid, i.message is not None) for i in items] == [
        ("mbus", True, False),
        ("mbus", True, True),
    ] * 2
    assert protocol.frames_received == 4 and protocol.invalid_frames == 0
    assert protocol.discarded_bytes >= len(b"garbage")


async def test_message_protocol_counts_bad_frames_and_a_full_queue(caplog: pytest.LogCaptureFixture) -> None:
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
    protocol = SmartMeterMessageProtocol(queue, *bundled_keys("dk"))
    stream = b"".join(bundled_frames("dk")[:3])
    broken = bytearray(stream[:300])
    broken[100] ^= 1
    with caplog.at_level(logging.WARNING):
        protocol.data_received(bytes(broken) + b"\x7e" + stream)
    assert protocol.invalid_frames >= 1
    assert queue.qsize() == 1 and protocol.queue_full_drops == 2  # bounded queue: the rest dropped, counted
