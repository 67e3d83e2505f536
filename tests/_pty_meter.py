"""A meter on the far side of a real pty, with fixed line settings, for testing `amshan probe` and `read`.

It reads the settings the other side applied to the port (termios) before every frame and sends the real
frame only when the baud rate matches; otherwise it sends what a UART at the wrong baud rate makes of it:
at a slower rate fewer bytes, every one with its top bit set by the idle line; at a faster rate each bit
stretched into whole 00 or ff bytes. (A Linux pty forces 8 data bits and refuses parity E, so the baud rate
is the setting it can tell apart.)
"""

from __future__ import annotations

import contextlib
import os
import pty
import termios
import threading
from collections.abc import Sequence

SPEEDS = {termios.B2400: 2400, termios.B9600: 9600, termios.B38400: 38400, termios.B115200: 115200}


def garble(frame: bytes, sent_at: int, read_at: int) -> bytes:
    """Return what a receiver at ``read_at`` baud sees of ``frame`` sent at ``sent_at`` baud."""
    if read_at < sent_at:
        step = max(1, round(sent_at / read_at))
        return bytes(byte | 0x80 for byte in frame[::step])
    stretch = max(1, round(read_at / sent_at))
    return b"".join((b"\xff" if byte & 1 else b"\x00") * stretch for byte in frame)


class PtyMeter:
    """Send ``frames`` in a loop, one every ``interval`` s at ``baudrate``, through a pty named ``device``."""

    def __init__(self, frames: Sequence[bytes], baudrate: int, interval: float = 0.05) -> None:
        self.frames = list(frames)
        self.baudrate = baudrate
        self.interval = interval
        self.master, self.slave = pty.openpty()
        os.set_blocking(self.master, False)
        self.device = os.ttyname(self.slave)
        self.sent_matching = 0
        self.sent_garbled = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pty-meter", daemon=True)

    def applied_baudrate(self) -> int | None:
        """Return the baud rate the reading side set on the port (None for one not in SPEEDS)."""
        return SPEEDS.get(termios.tcgetattr(self.slave)[4])

    def _run(self) -> None:
        index = 0
        while not self._stop.wait(self.interval):
            frame = self.frames[index % len(self.frames)]
            index += 1
            read_at = self.applied_baudrate()
            if read_at == self.baudrate:
                data = frame
                self.sent_matching += 1
            else:
                data = garble(frame, self.baudrate, read_at or 50)
                self.sent_garbled += 1
            with contextlib.suppress(BlockingIOError):  # nobody reads: the pty buffer is full, drop it
                os.write(self.master, data)

    def __enter__(self) -> PtyMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()
        os.close(self.master)
        os.close(self.slave)
