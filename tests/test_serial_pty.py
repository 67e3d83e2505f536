"""The serial factory through pyserial-asyncio on real pseudo-terminals: pty.openpty and socat's pty pairs."""

from __future__ import annotations

import asyncio
import os
import pty
import random
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import serial
from _processes import (
    SocatPtyPair,
    complete_vectors,
    expected_messages,
    open_fd_count,
    random_chunks,
    receive_until_end_mark,
    run_bounded,
    write_paced,
)
from _support import corpus_frames

from amshan.autodecoder import AutoDecoder
from amshan.meter_connection import ConnectionManager, ExponentialBackOff, SmartMeterFrameContentProtocol
from amshan.serial_connection_factory import (
    create_serial_frame_connection,
    create_serial_frame_content_connection,
)

SEED = 24000


def corpus_batches(count: int) -> list[tuple[bytes, list[bytes]]]:
    """Split the real valid frames into count batches of (wire bytes, expected message contents)."""
    vectors = complete_vectors(corpus_frames(layer="hdlc", valid=True))
    random.Random(SEED).shuffle(vectors)
    batches = []
    for index in range(count):
        part = vectors[index::count]
        batches.append(
            (b"".join(bytes.fromhex(v["hex"]) for v in part), [m for v in part for m in expected_messages(v)])
        )
    return batches


DECODED_FIELDS = ("meter_id", "meter_type", "active_power_import", "voltage_l1", "current_l1")


def assert_decoded_as_stated(received: list[bytes]) -> None:
    """The Norwegian and Swedish pushes received decode to the values the corpus states for them."""
    checked = 0
    for vector in corpus_frames(layer="hdlc", valid=True, values_checked=True):
        messages = expected_messages(vector)
        if vector["country"] not in ("NO", "SE") or len(messages) != 1 or messages[0] not in received:
            continue
        decoded = AutoDecoder().decode_frame_content(messages[0])
        assert decoded is not None, vector["id"]
        for field in DECODED_FIELDS:
            if field in vector["values"]:
                found, stated = decoded.get(field), vector["values"][field]
                assert found == pytest.approx(stated) if isinstance(stated, float) else found == stated, field
                checked += 1
    assert checked > 100


async def wait_connected(
    manager: ConnectionManager, timeout: float = 10, previous: SmartMeterFrameContentProtocol | None = None
) -> SmartMeterFrameContentProtocol:
    """Wait for a (new) connection whose port is open, so that bytes written next are not flushed away."""
    deadline = time.monotonic() + timeout
    while True:
        protocol = manager.connection[1] if manager.connection is not None else None
        if protocol is not None and protocol is not previous and protocol.last_frame_time is not None:
            assert isinstance(protocol, SmartMeterFrameContentProtocol)
            return protocol
        assert time.monotonic() < deadline, "the manager did not connect in time"
        await asyncio.sleep(0.002)


@pytest.fixture
def socat(tmp_path: Path) -> Any:
    pair = SocatPtyPair(tmp_path)
    pair.start()
    yield pair
    pair.stop()


async def test_openpty_frames_in_random_chunks_arrive_exactly_once(openpty: tuple[int, str]) -> None:
    master, path = openpty
    ((data, want),) = corpus_batches(1)
    fds_before = open_fd_count()
    tasks_before = len(asyncio.all_tasks())
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    transport, protocol = await create_serial_frame_content_connection(queue, None, url=path, baudrate=2400)
    await asyncio.sleep(0)  # connection_made: the port is open and read
    assert protocol.last_frame_time is not None
    await write_paced(master, random_chunks(data, random.Random(SEED)))
    got = await receive_until_end_mark(queue, master)
    assert got == want
    assert_decoded_as_stated(got)
    transport.close()
    await asyncio.wait_for(protocol.done, 5)
    assert open_fd_count() == fds_before
    assert len(asyncio.all_tasks()) == tasks_before


async def test_openpty_closing_the_far_end_ends_the_connection() -> None:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    master, slave = pty.openpty()
    try:
        transport, protocol = await create_serial_frame_connection(
            queue, None, os.ttyname(slave), baudrate=2400
        )
        await asyncio.sleep(0)
    finally:
        os.close(slave)
        os.close(master)  # the far end goes away: the reader must see it, not hang
    await asyncio.wait_for(protocol.done, 5)
    assert transport.is_closing()


async def test_parity_even_is_passed_to_pyserial(openpty: tuple[int, str]) -> None:
    """8E1 (Aidon, Kaifa) reaches termios: a pty refuses parity, so the argument demonstrably got through."""
    _, path = openpty
    fds_before = open_fd_count()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    with pytest.raises(Exception) as raised:  # termios.error(22) on Linux ptys, wrapped or not by pyserial
        await create_serial_frame_content_connection(
            queue, None, url=path, baudrate=2400, parity=serial.PARITY_EVEN, bytesize=8, stopbits=1
        )
    assert "22" in str(raised.value) or "Invalid argument" in str(raised.value)
    assert open_fd_count() == fds_before


async def test_socat_unplug_and_replug_reconnects_and_every_frame_arrives_once(socat: SocatPtyPair) -> None:
    batches = corpus_batches(3)
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    tasks_before = len(asyncio.all_tasks())
    fds_before = open_fd_count()
    manager = ConnectionManager(
        lambda: create_serial_frame_content_connection(queue, None, url=str(socat.device), baudrate=2400),
        back_off_connect_error=ExponentialBackOff(initial_delay_sec=0.05, max_delay_sec=0.2),
        connection_lost_back_off_sleep_sec=0.1,
    )
    task = asyncio.ensure_future(manager.connect_loop())
    rng = random.Random(SEED)
    try:
        for index, (data, want) in enumerate(batches):
            protocol = await wait_connected(manager)
            await write_paced(socat.feeder_fd(), random_chunks(data, rng))
            assert await receive_until_end_mark(queue, socat.feeder_fd()) == want, f"batch {index}"
            if index == len(batches) - 1:
                break
            socat.stop()  # the dongle is unplugged
            await asyncio.wait_for(protocol.done, 5)
            await asyncio.sleep(0.3)  # a few failed attempts while the device is gone
            replugged = time.monotonic()
            socat.start()
            await wait_connected(manager, previous=protocol)
            reconnect = time.monotonic() - replugged
            print(f"serial replug -> reconnected in {reconnect:.3f} s")
            assert reconnect < 1.0  # back-off capped at 0.2 s here
        assert manager.connection_count == len(batches)
    finally:
        manager.close()
        await asyncio.wait_for(task, 5)
    assert len(asyncio.all_tasks()) == tasks_before
    socat.stop()
    assert open_fd_count() == fds_before


async def test_socat_silent_device_is_reconnected_by_the_watchdog(socat: SocatPtyPair) -> None:
    ((data, want),) = corpus_batches(1)
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    manager = ConnectionManager(
        lambda: create_serial_frame_content_connection(queue, None, url=str(socat.device), baudrate=2400),
        idle_timeout=0.4,
    )
    task = asyncio.ensure_future(manager.connect_loop())
    try:
        protocol = await wait_connected(manager)
        await write_paced(socat.feeder_fd(), random_chunks(data, random.Random(SEED)))
        assert await receive_until_end_mark(queue, socat.feeder_fd()) == want
        silent_since = protocol.last_frame_time
        assert silent_since is not None
        await wait_connected(manager, previous=protocol)
        reconnect = time.monotonic() - silent_since
        print(f"serial silent, idle_timeout 0.4 s: reconnected {reconnect:.3f} s after the last frame")
        assert 0.4 <= reconnect < 1.0
        assert manager.idle_disconnects == 1
        await wait_connected(manager)
        await write_paced(socat.feeder_fd(), random_chunks(data, random.Random(SEED + 1)))
        assert await receive_until_end_mark(queue, socat.feeder_fd()) == want
    finally:
        manager.close()
        await asyncio.wait_for(task, 5)


@pytest.mark.parametrize(("bytesize", "refused"), [("7", True), ("8", False)])
async def test_cli_bytesize_reaches_termios(openpty: tuple[int, str], bytesize: str, refused: bool) -> None:
    """--bytesize 7 (Dutch DSMR 2.2/3.0 P1 meters, 9600 7E1) reaches termios: a pty refuses 7 data bits."""
    _, path = openpty
    amshan = str(Path(sys.executable).with_name("amshan"))
    argv = (amshan, "read", path, "--baudrate", "9600", "--bytesize", bytesize, "--duration", "1.5")
    _, _, stderr = await run_bounded(*argv, timeout=30)
    assert (f"refuses 9600 baud {bytesize}N1" in stderr) is refused, stderr
