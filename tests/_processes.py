"""Real socat and ser2net for the asyncio tests (started, polled, stopped by PID), and corpus streams."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from _hdlc_builder import build_frame, check_octets
from _support import corpus_frames, require_tool

READY_TIMEOUT_SEC = 5.0
STOP_TIMEOUT_SEC = 3.0


def wait_until(
    predicate: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT_SEC, poll: float = 0.005
) -> None:
    """Poll predicate every ``poll`` seconds until it holds; fail after timeout saying what was awaited."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(poll)


def free_tcp_port() -> int:
    """Return a loopback TCP port that nothing listens on (bind port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def is_listening(port: int) -> bool:
    """Return True when a socket listens on 127.0.0.1:port (read from /proc/net/tcp: no probe connection)."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp", encoding="ascii") as table:
        next(table)
        return any(f[1] == wanted and f[3] == "0A" for f in (line.split() for line in table))


class ManagedProcess:
    """One child process, stopped by its own PID (SIGTERM, then SIGKILL) and never by name."""

    def __init__(self, argv: list[str], log_path: Path) -> None:
        self.argv = argv
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SEC)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_SEC)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class SocatPtyPair:
    """A virtual serial cable made by socat: the code under test opens `device`, the test writes `feeder`."""

    def __init__(self, directory: Path, name: str = "meter") -> None:
        self.device = directory / f"{name}_dev"
        self.feeder = directory / f"{name}_feed"
        links = [f"pty,raw,echo=0,link={link}" for link in (self.device, self.feeder)]
        self.process = ManagedProcess(
            [require_tool("socat"), "-d", "-d", *links], directory / f"{name}_socat.log"
        )
        self._feeder_fd: int | None = None

    # socat logs this once both ptys are set up. It makes each link before it makes that pty raw: a write
    # right after the feeder link appears can still meet the default line discipline (ONLCR turns 0A into
    # 0D 0A), which a loaded machine showed as a frame corrupted on its way in.
    READY = "starting data transfer loop"

    def start(self) -> None:
        """Plug the cable in: start socat and wait until both ptys are linked and raw."""
        started_before = self.process.log().count(self.READY)
        self.process.start()
        wait_until(
            lambda: self.process.log().count(self.READY) > started_before or not self.process.running(),
            f"socat to set up {self.device} and {self.feeder}",
        )
        assert self.process.running(), f"socat exited: {self.process.log()[-2000:]}"
        assert self.device.exists() and self.feeder.exists()

    def stop(self) -> None:
        """Unplug the cable: stop socat (SIGTERM by PID), which closes both ptys and removes the links."""
        if self._feeder_fd is not None:
            os.close(self._feeder_fd)
            self._feeder_fd = None
        self.process.stop()
        try:
            wait_until(lambda: not self.device.exists(), f"socat to remove {self.device}", timeout=1)
        except TimeoutError:  # socat did not clean up (killed): the links are ours to remove
            for link in (self.device, self.feeder):
                link.unlink(missing_ok=True)

    def feeder_fd(self) -> int:
        """Return a non-blocking fd on the writing end (opened once per start)."""
        if self._feeder_fd is None:
            self._feeder_fd = os.open(self.feeder, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        return self._feeder_fd


class Ser2net:
    """A real ser2net 4 exposing a serial device raw on a loopback TCP port."""

    def __init__(self, directory: Path, device: Path, port: int) -> None:
        self.port = port
        config = directory / "ser2net.yaml"
        config.write_text(
            "%YAML 1.1\n---\n"
            "connection: &meter\n"
            f"    accepter: tcp,127.0.0.1,{port}\n"
            "    enable: on\n"
            "    options:\n"
            "      kickolduser: true\n"
            "      chardelay: false\n"
            f"    connector: serialdev,{device},2400n81,local\n",
            encoding="ascii",
        )
        argv = [require_tool("ser2net"), "-n", "-u", "-c", str(config), "-P", str(directory / "ser2net.pid")]
        self.process = ManagedProcess(argv, directory / "ser2net.log")

    def start(self) -> None:
        """Start ser2net and wait until it listens."""
        self.process.start()
        wait_until(
            lambda: is_listening(self.port) or not self.process.running(), f"ser2net on port {self.port}"
        )
        assert self.process.running(), f"ser2net exited: {self.process.log()}"

    def stop(self) -> None:
        """Stop ser2net by PID and wait until the port is free."""
        self.process.stop()
        wait_until(lambda: not is_listening(self.port), f"ser2net to release port {self.port}")


async def write_paced(fd: int, chunks: list[bytes], timeout: float = 10.0) -> None:
    """Write chunks to a non-blocking fd in order, yielding to the loop between chunks and when full."""
    deadline = time.monotonic() + timeout
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the pty stayed full for {timeout} s") from None
                await asyncio.sleep(0.002)
        await asyncio.sleep(0)


END_MARK = b"\xe6\xe7\x00end of the batch"
"""The content of the frame ``receive_until_end_mark`` sends after a batch (no meter sends it)."""


async def receive_until_end_mark(
    queue: asyncio.Queue[bytes], fd: int, timeout: float = 10.0
) -> list[bytes]:
    """Write the end-mark frame to fd after a batch; return every message content that came before it.

    The byte stream is ordered, so once the mark is out nothing written before it can follow: what arrived is
    counted at the source, not guessed from a quiet spell (a late duplicate shows up in the returned list).
    """
    await write_paced(fd, [build_frame(END_MARK)], timeout)
    deadline = time.monotonic() + timeout
    got: list[bytes] = []
    while True:
        content = await asyncio.wait_for(queue.get(), max(0.0, deadline - time.monotonic()))
        if content == END_MARK:
            return got
        got.append(content)


async def run_bounded(*argv: str, timeout: float) -> tuple[int, str, str]:
    """Run a command without blocking the loop, killed if it overruns timeout; return code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    assert_no_traceback(argv, stderr)
    return process.returncode, stdout.decode(), stderr.decode()


def is_cli(argv: object) -> bool:
    """Return True for a command line of the amshan console script or one of the examples."""
    words = [str(word) for word in argv] if isinstance(argv, (list, tuple)) else [str(argv)]
    return any(Path(word).name == "amshan" or "/examples/" in word for word in words[:2])


def assert_no_traceback(argv: object, stderr: bytes | str | None) -> None:
    """Fail when a command line of amshan (or an example) printed a Python traceback: errors are one line."""
    if stderr is None or not is_cli(argv):
        return
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    assert "Traceback" not in text, f"{argv} printed a traceback:\n{text}"


def open_fd_count() -> int:
    """Return how many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def open_fds() -> Counter[str]:
    """Return what this process's file descriptors point to, counted by kind ("socket", "/dev/pts/3", ...)."""
    kinds: Counter[str] = Counter()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:  # the fd listdir itself used, closed since
            continue
        anonymous = target.startswith(("socket:", "pipe:", "anon_inode:"))
        kinds[target.split(":", 1)[0] if anonymous else target] += 1
    return kinds


# --- corpus streams: what a meter would send, and what must come out of the content protocol -------


def information_field(frame: bytes) -> bytes:
    """Return an HDLC frame's information field, located by the spec's rules (han-spec 2.1), not by amshan.

    frame includes both flags. After the 2-octet format field come two addresses, each ending at the first
    octet with its low bit set, then one control octet; frames with information carry an HCS before it.
    """
    body = frame[1:-1]
    position = 2
    for _ in range(2):
        while not body[position] & 1:
            position += 1
        position += 1
    position += 1  # control
    return b"" if len(body) == position + 2 else body[position + 2 : -2]


def is_segment(frame: bytes) -> bool:
    """Return True when the frame's segmentation bit says that more segments follow (han-spec 2.2)."""
    return bool(frame[1] & 0x08)


def vector_frames(vector: dict[str, object]) -> list[bytes]:
    """Return the frames of a corpus vector in wire order."""
    frames = vector["frames"]
    return (
        [bytes.fromhex(str(f)) for f in frames]
        if isinstance(frames, list)
        else [bytes.fromhex(str(vector["hex"]))]
    )


def expected_messages(vector: dict[str, object]) -> list[bytes]:
    """Return the message contents a receiver must deliver for a valid vector (segments joined)."""
    messages: list[bytes] = []
    parts: list[bytes] = []
    for frame in vector_frames(vector):
        parts.append(information_field(frame))
        if not is_segment(frame):
            message = b"".join(parts)
            if message:
                messages.append(message)
            parts = []
    return messages


def complete_vectors(vectors: list[dict[str, object]]) -> list[dict[str, object]]:
    """Keep the vectors whose last frame ends its message (drop captures of a first segment only)."""
    return [v for v in vectors if not is_segment(vector_frames(v)[-1])]


def random_chunks(data: bytes, rng: random.Random, largest: int = 64) -> list[bytes]:
    """Cut data into chunks of random sizes 1..largest."""
    chunks = []
    position = 0
    while position < len(data):
        size = rng.randint(1, largest)
        chunks.append(data[position : position + size])
        position += size
    return chunks


DATA_NOTIFICATION = bytes.fromhex("e6e7000f")  # LLC header, then the data-notification tag (han-spec 3)


class NumberedFrames:
    """Real single-frame meter pushes made distinct: frame n carries n in its long-invoke-id, FCS recomputed.

    Every valid corpus frame that holds one whole data-notification (93 frames of 5 makes) is a template;
    frame n is template n modulo their count, its 4 invoke-id octets set to n. What the content protocol must
    deliver for frame n is ``message(n)``; ``number(content)`` reads n back.
    """

    def __init__(self) -> None:
        self.templates: list[tuple[bytes, int]] = []  # (frame with flags, index of its information field)
        for vector in complete_vectors(corpus_frames(layer="hdlc", valid=True)):
            frames = vector_frames(vector)
            information = information_field(frames[0])
            if len(frames) == 1 and information.startswith(DATA_NOTIFICATION):
                self.templates.append((frames[0], len(frames[0]) - 3 - len(information)))

    def frame(self, number: int) -> bytes:
        """Return frame number n on the wire: flags, header and HCS of the template, new invoke-id and FCS."""
        template, start = self.templates[number % len(self.templates)]
        frame = bytearray(template)
        frame[start + 4 : start + 8] = number.to_bytes(4, "big")
        frame[-3:-1] = check_octets(bytes(frame[1:-3]))
        return bytes(frame)

    def message(self, number: int) -> bytes:
        """Return the message content of frame n (its information field)."""
        template, start = self.templates[number % len(self.templates)]
        return template[start : start + 4] + number.to_bytes(4, "big") + template[start + 8 : -3]

    @staticmethod
    def number(content: bytes) -> int:
        """Return n of a message content made by message(n)."""
        return int.from_bytes(content[4:8], "big")
