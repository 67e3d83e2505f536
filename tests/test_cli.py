"""The `amshan` console script run as a subprocess: files, stdin, hex, each format, TCP, serial, demo."""

from __future__ import annotations

import json
import math
import os
import pty
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from _hdlc_builder import bad_header_variants, build_frame
from _processes import run_bounded
from _support import corpus_frames, load_corpus

import amshan
from amshan.simulator import MeterSimulator, bundled_frames, bundled_keys

AMSHAN = Path(sys.executable).with_name("amshan")
TIMEOUT = 60
DATA = Path(amshan.__file__).parent / "data"

# The corpus took these from a source that printed float32 kWh: the Aidon frame carries 0x00A729D9 with
# scaler +1 Wh (109552250 Wh), the corpus says 109552248. Every other stated value is compared.
ROUNDED_IN_CORPUS = {"active_power_import_hour"}


def decodable_vectors() -> list[dict[str, Any]]:
    """Norwegian Aidon, Kaifa and Kamstrup frames whose stated values were independently checked."""
    return [
        vector
        for vector in corpus_frames(layer="hdlc", valid=True, country="NO", values_checked=True)
        if vector["meter"] in ("aidon", "kaifa", "kamstrup") and vector["values"]
    ]


def expected_values(vector: dict[str, Any]) -> dict[str, Any]:
    values = dict(vector["values"])
    if vector["id"].startswith("no-aidon-list3-gh1119-"):
        for key in ROUNDED_IN_CORPUS:
            values.pop(key, None)
    return values


def assert_values(decoded: dict[str, Any], vector: dict[str, Any]) -> None:
    for key, want in expected_values(vector).items():
        found = decoded.get(key)
        if key == "meter_datetime":
            assert datetime.fromisoformat(found) == datetime.fromisoformat(want), (vector["id"], key)
        elif isinstance(want, float):
            assert isinstance(found, (int, float)) and math.isclose(found, want, abs_tol=1e-9), (
                vector["id"],
                key,
                found,
                want,
            )
        else:
            assert found == want, (vector["id"], key, found, want)


def run_amshan(
    *args: str, stdin: bytes | None = None, timeout: float = TIMEOUT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    assert AMSHAN.exists(), f"the console script {AMSHAN} is not installed: pip install -e '.[test]'"
    result = subprocess.run(
        [str(AMSHAN), *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode("utf-8"), result.stderr.decode("utf-8")
    )


@pytest.fixture
def capture(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    """A capture file: the checked frames, with noise, idle flags and a corrupted frame between them."""
    vectors = decodable_vectors()
    assert len(vectors) >= 20
    parts = []
    for index, vector in enumerate(vectors):
        frame = bytes.fromhex(vector["hex"])
        if index % 3 == 0:
            parts.append(b"\x00\x13garbage\x7e\x7e")
        if index % 5 == 0:
            broken = bytearray(frame)
            broken[len(broken) // 2] ^= 0x40
            parts.append(bytes(broken))
        parts.append(frame)
    path = tmp_path / "capture.bin"
    path.write_bytes(b"".join(parts))
    return path, vectors


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_console_script_and_module_report_the_version() -> None:
    assert run_amshan("--version").stdout.strip() == f"amshan {amshan.__version__}"
    module = subprocess.run(
        [sys.executable, "-m", "amshan", "--version"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    assert module.stdout.strip() == f"amshan {amshan.__version__}"


def test_read_file_prints_one_json_object_per_message(capture: tuple[Path, list[dict[str, Any]]]) -> None:
    path, vectors = capture
    result = run_amshan("read", str(path))
    assert result.returncode == 0, result.stderr
    messages = json_lines(result.stdout)
    assert len(messages) == len(vectors)
    for message, vector in zip(messages, vectors):
        assert_values(message, vector)
    assert "frame" in result.stderr and "skipped" in result.stderr  # the corrupted frames, reported


def test_read_stdin_gives_the_same_messages(capture: tuple[Path, list[dict[str, Any]]]) -> None:
    path, vectors = capture
    from_file = run_amshan("read", str(path))
    from_stdin = run_amshan("read", "-", stdin=path.read_bytes())
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert from_stdin.stdout == from_file.stdout
    assert len(json_lines(from_stdin.stdout)) == len(vectors)


def test_json_datetimes_are_iso_8601() -> None:
    # Kaifa list 2 (gh180-2) carries 2022-01-02 14:37:20 with deviation 0x8000 (not specified): naive.
    [vector] = [v for v in load_corpus() if v["id"] == "no-kaifa-list2-gh180-2"]
    result = run_amshan("read", "-", stdin=bytes.fromhex(vector["hex"]))
    [message] = json_lines(result.stdout)
    assert message["meter_datetime"] == "2022-01-02T14:37:20"


def test_hex_input_with_spaces_comments_and_bad_lines() -> None:
    vectors = decodable_vectors()[:6]
    lines = ["# frames as a reader publishes them"]
    for index, vector in enumerate(vectors):
        text = vector["hex"]
        if index == 1:
            text = " ".join(text[i : i + 2] for i in range(0, len(text), 2))  # spaced bytes
        if index == 2:
            text = text[2:-2]  # without the flags
        lines.append(text)
        if index == 3:
            lines.extend(["", "this is not hex"])
    result = run_amshan("read", "-", "--hex", stdin=("\n".join(lines) + "\n").encode())
    assert result.returncode == 0, result.stderr
    messages = json_lines(result.stdout)
    assert len(messages) == len(vectors)
    for message, vector in zip(messages, vectors):
        assert_values(message, vector)
    assert "not hex" in result.stderr


UNITS = {"active_power": "W", "reactive_power": "var", "current": "A", "voltage": "V"}


def test_obis_format_lists_every_item_with_code_value_and_unit() -> None:
    [vector] = [v for v in load_corpus() if v["id"] == "no-kamstrup-list1-em001-2"]
    result = run_amshan("read", "-", "--format", "obis", stdin=bytes.fromhex(vector["hex"]))
    assert result.returncode == 0, result.stderr
    lines = {line.split()[1]: line.split() for line in result.stdout.splitlines() if line[:1].isdigit()}
    for key, want in vector["values"].items():
        fields = lines[key]
        # The OBIS code is the one the frame carries before the value (09 06 + six bytes, Kamstrup).
        assert fields[0].count(".") == 5 and bytes(map(int, fields[0].split("."))).hex() in vector["hex"]
        if isinstance(want, str):
            assert fields[2] == want
        else:
            assert math.isclose(float(fields[2]), want)
            prefix = next(p for p in UNITS if key.startswith(p))
            assert fields[3] == UNITS[prefix]
    assert result.stdout.startswith("# message 1 (Kamstrup)")


def test_frames_format_shows_addresses_control_and_checks() -> None:
    [vector] = [v for v in load_corpus() if v["id"] == "no-aidon-list1-hass-mini"]
    frame = bytes.fromhex(vector["hex"])
    broken = bytearray(frame)
    broken[-4] ^= 0x01  # inside the information field: the FCS no longer matches
    result = run_amshan("read", "-", "--format", "frames", stdin=frame + bytes(broken))
    assert result.returncode == 0, result.stderr
    first, first_hex, second, second_hex = result.stdout.splitlines()
    # Aidon (NO): destination 41, source 08 83, control 13 (spec: HDLC addresses of the Norwegian lists).
    assert re.search(r"valid frame, 44 bytes .*dst 41 +src 0883 +control 13 .*HCS ok +FCS ok", first), first
    assert "segmented no" in first
    assert first_hex.strip() == vector["hex"]
    assert "INVALID" in second and "HCS ok" in second and "FCS BAD" in second
    assert second_hex.strip() == bytes(broken).hex()


def test_frames_format_says_hcs_bad_for_a_wrong_header_under_a_right_fcs() -> None:
    [vector] = [v for v in load_corpus() if v["id"] == "no-aidon-list1-hass-mini"]
    frame = bytes.fromhex(vector["hex"])
    [(_, damaged), *_] = bad_header_variants(frame[1:-1])  # control bit flipped, FCS recomputed
    result = run_amshan("read", "-", "--format", "frames", stdin=b"\x7e" + damaged + frame)
    assert result.returncode == 0, result.stderr
    first, _, second, second_hex = result.stdout.splitlines()
    assert "INVALID" in first and "HCS BAD" in first and "FCS ok" in first, first
    assert re.search(r"valid frame, 44 bytes .*HCS ok +FCS ok", second), second
    assert second_hex.strip() == vector["hex"]


def test_undecodable_messages_are_reported_rate_limited_and_never_stop_the_run() -> None:
    garbage = build_frame(b"\xe6\xe7\x00\x0f\x40\x00\x00\x00\x00\xff\xff")
    [vector] = [v for v in load_corpus() if v["id"] == "no-kamstrup-list1-em001-2"]
    result = run_amshan("read", "-", stdin=garbage * 50 + bytes.fromhex(vector["hex"]))
    assert result.returncode == 0, result.stderr
    [message] = json_lines(result.stdout)
    assert_values(message, vector)
    complaints = [line for line in result.stderr.splitlines() if "did not decode" in line]
    assert 1 <= len(complaints) <= 11
    assert "51 messages, 1 decoded" in result.stderr


def test_megabytes_of_noise_between_real_frames_lose_no_message_and_log_little() -> None:
    """Random bytes (with stray flags and format octets) around every frame: each message still decodes."""
    rng = random.Random(77)
    vectors = decodable_vectors()
    noise = [rng.randbytes(rng.randrange(50_000, 250_000)) for _ in vectors]
    stream = b"".join(n + b"\x7e\xa0" + bytes.fromhex(v["hex"]) for n, v in zip(noise, vectors))
    assert len(stream) > 5_000_000
    result = run_amshan("read", "-", stdin=stream)
    assert result.returncode == 0, result.stderr
    messages = json_lines(result.stdout)
    assert len(messages) == len(vectors)
    for message, vector in zip(messages, vectors):
        assert_values(message, vector)
    assert len(result.stderr.splitlines()) <= 15, result.stderr


def test_usage_errors_exit_2() -> None:
    assert run_amshan("read", "/no/such/capture.bin").returncode == 2
    assert run_amshan("read", "tcp://127.0.0.1:1", "--hex").returncode == 2
    assert run_amshan("read", "-", "--database", "x", stdin=b"").returncode == 2
    assert run_amshan("read", "tcp://nowhere").returncode == 2


# --- ciphered meters: keys from options, a key file or the environment; never shown ---------------------


def ciphered_capture(
    tmp_path: Path,
) -> tuple[Path, int, tuple[bytes, bytes | None], tuple[bytes, bytes | None]]:
    """A capture of the bundled Danish (HDLC, SC 0x30) messages; their count; the Danish and Austrian keys."""
    path = tmp_path / "dk.bin"
    frames = bundled_frames("dk")
    path.write_bytes(b"\x00garbage".join(frames))
    return path, len(frames), bundled_keys("dk"), bundled_keys("at")


def test_keys_from_options_key_file_and_environment(tmp_path: Path) -> None:
    path, count, (ek, ak), _ = ciphered_capture(tmp_path)
    assert ak is not None
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"# the meter's keys\n{ek.hex().upper()}\n\n{ak.hex()}\n", encoding="utf-8")
    runs = [
        run_amshan("read", str(path), "--encryption-key", ek.hex(), "--authentication-key", ak.hex()),
        run_amshan("read", str(path), "--key-file", str(key_file)),
        run_amshan(
            "read", str(path), env={"AMSHAN_ENCRYPTION_KEY": ek.hex(), "AMSHAN_AUTHENTICATION_KEY": ak.hex()}
        ),
        run_amshan("read", str(path), "--encryption-key", ek.hex()),  # no AK: tags unchecked, still read
    ]
    for result in runs:
        assert result.returncode == 0, result.stderr
        assert result.stdout == runs[0].stdout
    messages = json_lines(runs[0].stdout)
    assert len(messages) == count
    assert {m["meter_manufacturer"] for m in messages} == {"Kamstrup"}
    assert all(ek.hex() not in r.stderr.lower() and ak.hex() not in r.stderr.lower() for r in runs)


def test_wrong_or_missing_keys_give_no_data_and_name_the_system_title_never_a_key(tmp_path: Path) -> None:
    path, count, (ek, ak), (other, _) = ciphered_capture(tmp_path)
    assert ak is not None and other is not None
    for keys in (
        [],
        ["--encryption-key", other.hex()],
        ["--encryption-key", ek.hex(), "--authentication-key", other.hex()],
    ):
        result = run_amshan("read", str(path), *keys)
        assert result.returncode == 1, result.stderr  # nothing decoded
        assert result.stdout == ""
        advice = "keys given do not decrypt them: check the keys" if keys else "pass the meter's key"
        assert f"{count} messages, 0 decoded; the messages are encrypted" in result.stderr
        assert result.stderr.rstrip().endswith(advice), result.stderr
        assert "system title 4b414d4501ac4d6e (KAM)" in result.stderr
        for key in (ek, ak, other):
            assert key.hex() not in result.stderr.lower()
    for bad in (
        ["--encryption-key", "00" * 15],
        ["--encryption-key", "zz" * 16],
        ["--authentication-key", ak.hex()],
    ):
        result = run_amshan("read", str(path), *bad)
        assert result.returncode == 2
        assert "00" * 15 not in result.stderr and ak.hex() not in result.stderr
    result = run_amshan("read", str(path), env={"AMSHAN_ENCRYPTION_KEY": "secret-but-wrong"})
    assert result.returncode == 2 and "secret" not in result.stderr


def test_frames_format_shows_mbus_frames_and_security_headers_without_keys(tmp_path: Path) -> None:
    path = tmp_path / "at.bin"
    path.write_bytes(b"".join(bundled_frames("at")[:2]))
    ek, _ = bundled_keys("at")
    assert ek is not None
    result = run_amshan("read", str(path), "--format", "frames", "--encryption-key", ek.hex())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # Netz NOE (han-spec A.3): L FA, C 53, A FF, CI 00 then 11, STSAP 01, DTSAP 67; SC 0x20, IC 0x23
    assert re.search(
        r"valid M-Bus frame, 256 bytes +L fa +C 53 +A ff +CI 00 \(segment 0, more follow\)", lines[0]
    )
    assert re.search(r"CI 11 \(segment 1, last\) +STSAP 01 +DTSAP 67 +checksum ok", lines[2])
    assert re.search(
        r"ciphered message \(glo\): system title 4b464d6750000009 \(KFM\) +security control 20 \(encrypted,"
        r" suite 0\) +invocation counter 35 ",
        lines[4],
    ), lines[4]
    assert "invocation counter 36 " in result.stdout
    assert ek.hex() not in result.stdout.lower() + result.stderr.lower()


@pytest.mark.parametrize("meter", ["dk", "at"])
def test_demo_of_a_ciphered_meter_decodes_with_its_public_keys(meter: str) -> None:
    result = run_amshan("demo", "--meter", meter, "--duration", "2", "--interval", "0.1", "--format", "json")
    assert result.returncode == 0, result.stderr
    messages = json_lines(result.stdout)
    assert len(messages) >= 3
    assert "--encryption-key" in result.stderr  # the command line to read it, with the public demo key
    assert all("active_power_import" in m for m in messages)


# --- live sources -------------------------------------------------------------------------------------------


def bundled_vectors() -> list[dict[str, Any]]:
    """The corpus vectors behind the bundled frames, in the order `amshan simulate --meter all` sends them."""
    by_id = {vector["id"]: vector for vector in load_corpus()}
    per_meter = []
    for meter in ("aidon", "kaifa", "kamstrup"):
        lines = (DATA / f"{meter}.txt").read_text(encoding="ascii").splitlines()
        per_meter.append([by_id[lines[i - 1][2:]] for i, line in enumerate(lines) if line and line[0] != "#"])
    longest = max(map(len, per_meter))
    return [vectors[i] for i in range(longest) for vectors in per_meter if i < len(vectors)]


@pytest.fixture
def simulator() -> Iterator[int]:
    """`amshan simulate` as a subprocess on a free port; yields the port, stopped by its PID."""
    process = subprocess.Popen(
        [str(AMSHAN), "simulate", "--interval", "0.02"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.search(r"listening on tcp://127\.0\.0\.1:(\d+)", first)
        assert match, first + (process.stderr.read() if process.poll() is not None and process.stderr else "")
        yield int(match[1])
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=5)


def test_read_tcp_from_the_simulator(simulator: int) -> None:
    vectors = bundled_vectors()
    count = len(vectors) + 4  # past the end of the replay: it loops
    result = run_amshan("read", f"tcp://127.0.0.1:{simulator}", "--count", str(count))
    assert result.returncode == 0, result.stderr
    messages = json_lines(result.stdout)
    assert len(messages) == count
    for message, vector in zip(messages, vectors + vectors):
        assert_values(message, vector)
        assert message["meter_manufacturer"] == vector["meter"].capitalize()


def test_read_tcp_with_drop_oldest(simulator: int) -> None:
    result = run_amshan("read", f"tcp://127.0.0.1:{simulator}", "--drop", "oldest", "--count", "3")
    assert result.returncode == 0, result.stderr
    messages = json_lines(result.stdout)
    assert len(messages) == 3
    for message, vector in zip(messages, bundled_vectors()):
        assert_values(message, vector)


def test_read_tcp_frames_format(simulator: int) -> None:
    result = run_amshan("read", f"tcp://127.0.0.1:{simulator}", "--format", "frames", "--count", "3")
    assert result.returncode == 0, result.stderr
    hex_lines = [line.strip() for line in result.stdout.splitlines() if line.startswith("  ")]
    assert hex_lines == [vector["hex"] for vector in bundled_vectors()[:3]]


def test_read_serial_device_through_a_pty() -> None:
    master, slave = pty.openpty()
    try:
        device = os.ttyname(slave)
        [vector] = [v for v in load_corpus() if v["id"] == "no-kamstrup-list1-em001-2"]
        process = subprocess.Popen(
            [str(AMSHAN), "read", device, "--parity", "N", "--count", "3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 20
            while process.poll() is None and time.monotonic() < deadline:
                # pyserial discards what was waiting when it opens the port: keep sending until 3 arrived.
                os.write(master, bytes.fromhex(vector["hex"]))
                time.sleep(0.05)
            stdout, stderr = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=5)
        assert process.returncode == 0, stderr
        messages = json_lines(stdout)
        assert len(messages) == 3
        for message in messages:
            assert_values(message, vector)
    finally:
        os.close(master)
        os.close(slave)


def test_demo_prints_real_decoded_messages_and_exits_0() -> None:
    started = time.monotonic()
    result = run_amshan("demo", "--duration", "3", "--interval", "0.1", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20
    messages = json_lines(result.stdout)
    assert len(messages) >= 9
    vectors = bundled_vectors()
    for message, vector in zip(messages, vectors):
        assert_values(message, vector)
    assert {message["meter_manufacturer"] for message in messages} == {"Aidon", "Kaifa", "Kamstrup"}
    assert "simulated meter on tcp://127.0.0.1:" in result.stderr
    assert f"{len(messages)} messages decoded" in result.stderr


def test_demo_default_obis_output() -> None:
    result = run_amshan("demo", "--duration", "2", "--interval", "0.1")
    assert result.returncode == 0, result.stderr
    assert "# message 1 (Aidon)" in result.stdout
    assert re.search(r"^1\.1\.1\.7\.0\.255 +active_power_import +\d+ W$", result.stdout, re.MULTILINE)


def test_progress_bar_on_a_terminal_only(capture: tuple[Path, list[dict[str, Any]]]) -> None:
    path, vectors = capture
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(
            [str(AMSHAN), "read", str(path)], stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL
        )
        os.close(slave)
        stdout, _ = process.communicate(timeout=TIMEOUT)
        terminal = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(master)
    assert process.returncode == 0
    assert len(json_lines(stdout.decode())) == len(vectors)
    size = path.stat().st_size
    assert b"\r[" in terminal and b"100.0%" in terminal and f"{size:,} bytes".encode() in terminal
    assert f"{len(vectors)} messages".encode() in terminal
    # The last drawing: decoded messages, the rate and the time left.
    last = [drawing for drawing in terminal.decode().split("\r") if drawing.startswith("[")][-1]
    assert re.search(rf"  {len(vectors)} messages  {len(vectors)} decoded  [\d,]+/s  0:00 left", last), last
    assert "100.0%" not in run_amshan("read", str(path)).stderr  # stderr is a pipe here: no bar


def test_count_and_a_closed_stdout_end_a_file_run_early(capture: tuple[Path, list[dict[str, Any]]]) -> None:
    path, vectors = capture
    data = path.read_bytes() * 50
    result = run_amshan("read", "-", "--count", "2", stdin=data)
    assert result.returncode == 0, result.stderr
    assert [message["meter_id"] for message in json_lines(result.stdout)] == [
        vector["values"].get("meter_id") for vector in vectors[:2]
    ]
    frames = run_amshan("read", str(path), "--format", "frames", "--count", "3")
    assert len(frames.stdout.splitlines()) == 6
    head = subprocess.run(
        f"'{AMSHAN}' read - | head -n 1",
        shell=True,
        input=data,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert head.returncode == 0 and len(head.stdout.splitlines()) == 1
    assert b"Traceback" not in head.stderr and b"RuntimeWarning" not in head.stderr


async def test_idle_watchdog_reconnects_a_silent_tcp_meter() -> None:
    # One frame, then silence with the connection open (a hung ser2net or ESP reader): the watchdog must
    # close it and the connection manager reconnect, which replays the frame to the new connection.
    [vector] = [v for v in load_corpus() if v["id"] == "no-kamstrup-list1-em001-2"]
    async with MeterSimulator([bytes.fromhex(vector["hex"])], interval=3600) as meter:
        returncode, stdout, stderr = await run_bounded(
            str(AMSHAN), "read", f"tcp://127.0.0.1:{meter.port}", "--idle-timeout", "0.5", "--count", "2",
            timeout=TIMEOUT,
        )  # fmt: skip
        assert returncode == 0, stderr
        assert meter.clients_served == 2
    messages = json_lines(stdout)
    assert len(messages) == 2
    for message in messages:
        assert_values(message, vector)
    assert "No valid frame from the meter for 0.5 s" in stderr
