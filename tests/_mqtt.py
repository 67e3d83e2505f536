"""A real mosquitto for the MQTT tests (own config in a tmp folder, loopback, started and stopped by PID), a
subscriber that records what arrives, and meter frames made distinct by their active power."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Iterator

import aiomqtt
import crcmod.predefined
from _processes import ManagedProcess, free_tcp_port, is_listening, wait_until
from _support import require_tool

from amshan.simulator import bundled_frames

_X25 = crcmod.predefined.mkCrcFun("x-25")


class Mosquitto:
    """A real mosquitto 2 on 127.0.0.1 with its own config, restartable on the same port."""

    def __init__(
        self,
        folder: Path,
        *,
        password_file: Path | None = None,
        persistence: bool = False,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.folder = folder
        self.port = free_tcp_port()
        lines = [
            f"listener {self.port} 127.0.0.1",
            *([f"certfile {tls[0]}", f"keyfile {tls[1]}"] if tls else []),
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type subscribe",
            "max_queued_messages 0",  # a slow test subscriber must not lose messages to the broker's limit
        ]
        if os.geteuid() == 0:  # as root mosquitto becomes the user mosquitto, who cannot read pytest's tmp
            lines.append("user root")
        if password_file is None:
            lines.append("allow_anonymous true")
        else:
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        if persistence:  # sessions of clean_session=False clients survive a restart
            lines += ["persistence true", f"persistence_location {folder}/", "autosave_interval 0"]
        else:
            lines.append("persistence false")
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n", encoding="ascii")
        self.process = ManagedProcess(
            [require_tool("mosquitto"), "-c", str(self.config)], folder / "mosquitto.log"
        )

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process.start()
        wait_until(lambda: is_listening(self.port) or not self.process.running(), f"mosquitto on {self.port}")
        assert self.process.running(), self.process.log()[-2000:]

    def stop(self) -> None:
        self.process.stop()
        wait_until(lambda: not is_listening(self.port), f"mosquitto to release port {self.port}")

    def log(self) -> str:
        return self.process.log()

    @contextlib.contextmanager
    def running(self) -> Iterator[Mosquitto]:
        """Start the broker for a with block, and stop it (by PID) whatever happens inside."""
        self.start()
        try:
            yield self
        finally:
            self.stop()


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """Make a self-signed certificate for 127.0.0.1 with the openssl command; return (cert, key)."""
    cert, key = folder / "broker.crt", folder / "broker.key"
    subprocess.run(
        [
            *(require_tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def make_password_file(folder: Path, user: str, password: str) -> Path:
    """Write a mosquitto password file with one user (mosquitto_passwd -b)."""
    path = folder / "passwords"
    path.touch()
    subprocess.run(
        [require_tool("mosquitto_passwd"), "-b", str(path), user, password], check=True, capture_output=True
    )
    path.chmod(0o600)
    return path


class Recorder:
    """A real subscriber: records every message of a subscription, by topic, in arrival order."""

    def __init__(
        self,
        port: int,
        topic: str = "#",
        *,
        qos: int = 1,
        client_id: str | None = None,
        clean_session: bool = True,
    ) -> None:
        self.port = port
        self.topic = topic
        self.qos = qos
        self.client_id = client_id
        self.clean_session = clean_session
        self.messages: dict[str, list[bytes]] = defaultdict(list)
        self.retained: dict[str, list[bool]] = defaultdict(list)
        self.count = 0
        self.connections = 0
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Recorder:
        self._task = asyncio.ensure_future(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        """Subscribe, record, and reconnect (bounded by the test's own deadline) when the broker goes away."""
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier=self.client_id, clean_session=self.clean_session
                ) as client:
                    await client.subscribe(self.topic, qos=self.qos)
                    self.connections += 1
                    self._ready.set()
                    async for message in client.messages:
                        payload = message.payload
                        assert isinstance(payload, bytes)
                        self.messages[str(message.topic)].append(payload)
                        self.retained[str(message.topic)].append(bool(message.retain))
                        self.count += 1
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)

    async def wait_for(self, predicate: object, what: str, timeout: float = 10.0) -> None:
        """Poll the predicate (a callable) to a deadline, yielding to the loop."""
        assert callable(predicate)
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up after {timeout} s waiting for {what}")
            await asyncio.sleep(0.01)


def kaifa_list1_frame(power: int) -> bytes:
    """Return the bundled Kaifa list-1 frame (active power only) carrying ``power`` W, FCS recomputed."""
    template = next(f for f in bundled_frames("kaifa") if len(f) < 50)
    marker = template.index(bytes.fromhex("0600001015"))  # double-long-unsigned 4117 W, the captured value
    frame = bytearray(template)
    frame[marker + 1 : marker + 5] = power.to_bytes(4, "big")
    frame[-3:-1] = _X25(bytes(frame[1:-3])).to_bytes(2, "little")
    return bytes(frame)
