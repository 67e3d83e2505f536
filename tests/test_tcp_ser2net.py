"""The TCP factory and ConnectionManager against a real ser2net on 127.0.0.1 in front of a socat pty pair."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest
from _processes import (
    Ser2net,
    SocatPtyPair,
    complete_vectors,
    expected_messages,
    free_tcp_port,
    random_chunks,
    receive_until_end_mark,
    write_paced,
)
from _support import corpus_frames

from amshan.meter_connection import ConnectionManager, ExponentialBackOff, SmartMeterFrameContentProtocol
from amshan.tcp_connection_factory import create_tcp_frame_content_connection

SEED = 4001
EMPTY_FRAME = bytes.fromhex(corpus_frames(id="xx-other-hdlc-amshan-empty-info", valid=True)[0]["hex"])


class Rig:
    """socat (the meter's serial cable) + ser2net (the network bridge) + a ConnectionManager reading it."""

    def __init__(self, directory: Path) -> None:
        self.socat = SocatPtyPair(directory)
        self.ser2net = Ser2net(directory, self.socat.device, free_tcp_port())
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.back_off = ExponentialBackOff(initial_delay_sec=0.05, max_delay_sec=0.4)
        self.manager: ConnectionManager | None = None
        self.task: asyncio.Future[None] | None = None

    def start_manager(self, **kwargs: Any) -> ConnectionManager:
        port = self.ser2net.port
        self.manager = ConnectionManager(
            lambda: create_tcp_frame_content_connection(self.queue, None, "127.0.0.1", port),
            back_off_connect_error=self.back_off,
            connection_lost_back_off_sleep_sec=0.2,
            **kwargs,
        )
        self.task = asyncio.ensure_future(self.manager.connect_loop())
        return self.manager

    async def connected(
        self, previous: SmartMeterFrameContentProtocol | None = None, timeout: float = 10
    ) -> SmartMeterFrameContentProtocol:
        """Wait for a (new) connection, then until ser2net passes bytes (it flushes the device on open).

        Until a frame arrives, a real frame without information (which the content protocol never queues) is
        written every 20 ms: bytes written earlier may be flushed by ser2net, not by the code under test.
        """
        assert self.manager is not None
        deadline = time.monotonic() + timeout
        while True:
            connection = self.manager.connection
            protocol = connection[1] if connection is not None else None
            if protocol is not None and protocol is not previous:
                break
            assert time.monotonic() < deadline, "no connection through ser2net in time"
            await asyncio.sleep(0.002)
        assert isinstance(protocol, SmartMeterFrameContentProtocol)
        frames_before = protocol.frames_received
        while protocol.frames_received == frames_before:
            assert time.monotonic() < deadline, "ser2net passed nothing through in time"
            await write_paced(self.socat.feeder_fd(), [EMPTY_FRAME])
            await asyncio.sleep(0.02)
        return protocol

    async def send_and_receive(self, data: bytes, want: list[bytes], rng: random.Random) -> None:
        """Write data to the meter's end in random chunks; exactly want must arrive before the end mark."""
        await write_paced(self.socat.feeder_fd(), random_chunks(data, rng))
        assert await receive_until_end_mark(self.queue, self.socat.feeder_fd()) == want

    async def stop(self) -> None:
        if self.manager is not None and self.task is not None:
            self.manager.close()
            await asyncio.wait_for(self.task, 5)
        self.ser2net.stop()
        self.socat.stop()


@pytest.fixture
async def rig(tmp_path: Path) -> Any:
    rig = Rig(tmp_path)
    rig.socat.start()
    rig.ser2net.start()
    try:
        yield rig
    finally:
        await rig.stop()


def corpus_batches(count: int) -> list[tuple[bytes, list[bytes]]]:
    vectors = complete_vectors(corpus_frames(layer="hdlc", valid=True))
    random.Random(SEED).shuffle(vectors)
    return [
        (
            b"".join(bytes.fromhex(v["hex"]) for v in vectors[i::count]),
            [m for v in vectors[i::count] for m in expected_messages(v)],
        )
        for i in range(count)
    ]


async def test_frames_through_ser2net_arrive_exactly_once(rig: Rig) -> None:
    rig.start_manager()
    ((data, want),) = corpus_batches(1)
    await rig.connected()
    await rig.send_and_receive(data, want, random.Random(SEED))


async def test_ser2net_stopped_and_restarted_reconnects_with_back_off(rig: Rig) -> None:
    manager = rig.start_manager()
    batches = corpus_batches(2)
    rng = random.Random(SEED)
    protocol = await rig.connected()
    await rig.send_and_receive(*batches[0], rng)
    rig.ser2net.stop()
    await asyncio.wait_for(protocol.done, 5)
    deadline = time.monotonic() + 10  # refused attempts after 0, 0.05, 0.1, 0.2, 0.4 s ...: polled, not slept
    while rig.back_off.current_delay_sec < 0.4:
        assert time.monotonic() < deadline, f"back-off only at {rig.back_off.current_delay_sec} s after 10 s"
        await asyncio.sleep(0.01)
    assert rig.back_off.current_delay_sec == 0.4  # backed off up to the cap, no further
    restarted = time.monotonic()
    rig.ser2net.start()
    await rig.connected(previous=protocol)
    reconnect = time.monotonic() - restarted
    print(f"ser2net restart -> frames flow again in {reconnect:.3f} s (back-off at its 0.4 s cap)")
    assert reconnect < 0.4 + 0.8, f"frames flowed {reconnect:.3f} s after the restart; at most 1.2 s expected"
    assert rig.back_off.current_delay_sec == 0, f"back-off {rig.back_off.current_delay_sec} s after success"
    await rig.send_and_receive(*batches[1], rng)
    assert manager.connection_count == 2


async def test_device_unplugged_behind_ser2net_reconnects_when_it_returns(rig: Rig) -> None:
    manager = rig.start_manager()
    batches = corpus_batches(2)
    rng = random.Random(SEED)
    protocol = await rig.connected()
    await rig.send_and_receive(*batches[0], rng)
    rig.socat.stop()  # the serial device disappears; ser2net keeps listening
    await asyncio.wait_for(protocol.done, 5)
    await asyncio.sleep(0.5)
    replugged = time.monotonic()
    rig.socat.start()
    await rig.connected(previous=protocol)
    reconnect = time.monotonic() - replugged
    print(
        f"device behind ser2net replugged -> frames flow again in {reconnect:.3f} s "
        f"({manager.connection_count - 2} short connections while it was gone)"
    )
    assert reconnect < 2.0, f"frames flowed {reconnect:.3f} s after the replug; under 2 s expected"
    await rig.send_and_receive(*batches[1], rng)


async def test_silent_ser2net_connection_is_detected_by_the_watchdog(rig: Rig) -> None:
    manager = rig.start_manager(idle_timeout=0.5)
    ((data, want),) = corpus_batches(1)
    rng = random.Random(SEED)
    protocol = await rig.connected()
    await rig.send_and_receive(data, want, rng)
    silent_since = protocol.last_frame_time
    assert silent_since is not None
    protocol = await rig.connected(previous=protocol)
    reconnect = time.monotonic() - silent_since
    print(
        f"silent ser2net stream, idle_timeout 0.5 s: frames flow again {reconnect:.3f} s after the last one"
    )
    assert 0.5 <= reconnect < 1.5, f"reconnected {reconnect:.3f} s after the last frame, not 0.5 to 1.5 s"
    assert manager.idle_disconnects == 1, f"{manager.idle_disconnects} idle disconnects, 1 expected"
    await rig.send_and_receive(data, want, rng)
