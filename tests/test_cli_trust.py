"""The command line off the happy path, each case as a user saw it: the exit status and the exact line.

Every case runs the `amshan` console script (or an example) as a subprocess; conftest.py fails any of them
that prints a traceback.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from _hdlc_builder import build_frame
from _processes import free_tcp_port, run_bounded
from _pty_meter import PtyMeter
from _support import PROJECT_ROOT, corpus_frames, load_corpus
from serial.tools import list_ports
from test_cli import AMSHAN, TIMEOUT, bundled_vectors, json_lines, run_amshan
from test_influxdb import InfluxServer, influxd  # noqa: F401 - the real-influxd fixture

from amshan.simulator import MeterSimulator, bundled_frames

EXAMPLES = PROJECT_ROOT / "examples"
KAMSTRUP_IDS = ("no-kamstrup-list1-em001-2", "no-kamstrup-list1-em001-4")


def kamstrup_frames() -> list[bytes]:
    by_id = {vector["id"]: vector for vector in load_corpus()}
    return [bytes.fromhex(by_id[name]["hex"]) for name in KAMSTRUP_IDS]


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stderr.splitlines()


# --- bad arguments: usage errors (exit 2), one line, before anything starts -----------------------------


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("simulate", "--port", "-1"),
            "amshan simulate: argument --port: expected a TCP port 0-65535 (0: any free port), found '-1'"
            " (see amshan simulate --help)",
        ),
        (
            ("simulate", "--port", "70000"),
            "amshan simulate: argument --port: expected a TCP port 0-65535 (0: any free port), found '70000'"
            " (see amshan simulate --help)",
        ),
        (
            ("simulate", "--host", "no.such.invalid"),
            "amshan: cannot resolve host 'no.such.invalid' in --host: check the name, or give an IP address",
        ),
        (
            ("read", "-", "--duration", "abc"),
            "amshan read: argument --duration: expected a number above 0 (e.g. 2.5), found 'abc'"
            " (see amshan read --help)",
        ),
        (
            ("read", "-", "--idle-timeout", "-5"),
            "amshan read: argument --idle-timeout: expected a number of seconds, 0 or more, found '-5'"
            " (see amshan read --help)",
        ),
        (
            ("read", "tcp://127.0.0.1:99999"),
            "amshan: the port of tcp://127.0.0.1:99999 must be 1-65535, found 99999",
        ),
        (
            ("read", "tcp://no.such.invalid:3001"),
            "amshan: cannot resolve host 'no.such.invalid' in tcp://no.such.invalid:3001: check the name,"
            " or give an IP address",
        ),
        (
            ("read", "/no/such/capture.bin"),
            "amshan: no such file or device: /no/such/capture.bin; give a capture file, a serial device,"
            " tcp://HOST:PORT or -",
        ),
        (
            ("read", "-", "--save", "/no/such/folder/capture.bin"),
            "amshan: cannot write the --save file /no/such/folder/capture.bin: No such file or directory",
        ),
        (
            ("forward-influxdb", "-", "http://127.0.0.1:99999", "metering"),
            "amshan: the port of the InfluxDB URL http://127.0.0.1:99999 must be 1-65535",
        ),
        (
            ("read", "-", "--influxdb", "http://no.such.invalid:8086", "--database", "metering"),
            "amshan: cannot resolve host 'no.such.invalid' in http://no.such.invalid:8086: check the name,"
            " or give an IP address",
        ),
        (
            ("forward-influxdb", "-", "localhost:8086", "metering"),
            "amshan: expected an http:// or https:// InfluxDB URL, found 'localhost:8086'",
        ),
        (
            ("probe", "/etc/hostname"),
            "amshan: probe listens to a serial device or tcp://HOST:PORT, not to the file /etc/hostname",
        ),
    ],
)
def test_bad_arguments_are_one_line_usage_errors(args: tuple[str, ...], line: str) -> None:
    started = time.monotonic()
    result = run_amshan(*args, stdin=b"")
    assert (result.returncode, stderr_lines(result)) == (2, [line])
    assert result.stdout == ""
    assert time.monotonic() - started < 20  # refused up front, nothing started


def test_simulate_on_a_port_in_use_says_so() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_amshan("simulate", "--port", str(port), "--duration", "5")
    assert (result.returncode, stderr_lines(result)) == (
        1,
        [
            f"amshan: cannot listen on 127.0.0.1 port {port}: address already in use; choose another --port"
            " (0 picks a free one)"
        ],
    )


# --- live sources that never connect: one line saying why, exit 1 -----------------------------------------


def test_a_missing_serial_device_is_named_once_and_the_run_exits_1() -> None:
    result = run_amshan("read", "/dev/ttyUSB9", "--duration", "2.5")
    assert (result.returncode, stderr_lines(result)) == (
        1,
        [
            "amshan: cannot open serial port /dev/ttyUSB9: no such device; check the name"
            " (`amshan probe` lists serial ports); retrying",
            "amshan: never connected to serial port /dev/ttyUSB9 within 2.5 s",
        ],
    )


def test_a_refused_tcp_connection_names_host_and_port() -> None:
    port = free_tcp_port()
    result = run_amshan("read", f"tcp://127.0.0.1:{port}", "--duration", "2")
    assert (result.returncode, stderr_lines(result)) == (
        1,
        [
            f"amshan: host 127.0.0.1 port {port} refused the connection: check that ser2net (or the meter"
            " reader) listens there; retrying",
            f"amshan: never connected to host 127.0.0.1 port {port} within 2 s",
        ],
    )


def test_a_port_that_refuses_parity_e_names_port_and_setting() -> None:
    with PtyMeter(kamstrup_frames(), 2400) as meter:
        result = run_amshan("read", meter.device, "--parity", "E", "--duration", "2")
    assert (result.returncode, stderr_lines(result)) == (
        1,
        [
            f"amshan: serial port {meter.device} refuses 2400 baud 8E1: it cannot do that setting;"
            f" try another --baudrate or --parity, or run `amshan probe {meter.device}`; retrying",
            f"amshan: never connected to serial port {meter.device} within 2 s",
        ],
    )


# --- files and stdin that decode nothing: exit 1 and what was seen -----------------------------------------


def test_random_bytes_exit_1_with_what_was_seen(tmp_path: Path) -> None:
    noise = tmp_path / "noise.bin"
    noise.write_bytes(os.urandom(5_000_000))
    result = run_amshan("read", str(noise))
    assert result.returncode == 1
    lines = stderr_lines(result)
    assert len(lines) <= 13, result.stderr  # ten reports, the count of the rest, the summary
    problems = re.fullmatch(r"amshan: (\d+) problems: \1 invalid frames \((\d+) not shown above\)", lines[-2])
    assert problems and int(problems[2]) == int(problems[1]) - 11, lines[-2]  # ten, then one a minute
    assert re.fullmatch(
        rf"amshan: nothing decoded from {noise}: 5,000,000 bytes, (\d+) frames \(\1 invalid\), 0 messages,"
        r" 0 decoded; no valid HDLC frame in it: not a meter capture, or recorded with wrong serial settings",
        lines[-1],
    ), lines[-1]


def test_a_hex_file_read_without_hex_says_add_hex(tmp_path: Path) -> None:
    vectors = corpus_frames(layer="hdlc", valid=True, country="NO", meter="aidon")[:3]
    text = "".join(vector["hex"] + "\n" for vector in vectors)
    capture = tmp_path / "frames.txt"
    capture.write_text(text)
    result = run_amshan("read", str(capture))
    assert (result.returncode, stderr_lines(result)) == (
        1,
        [
            f"amshan: nothing decoded from {capture}: {len(text):,} bytes, 0 frames (0 invalid), 0 messages,"
            " 0 decoded; it looks like hex text: add --hex"
        ],
    )
    assert len(json_lines(run_amshan("read", str(capture), "--hex").stdout)) == 3


def test_p1_text_is_read_and_damaged_p1_text_says_p1() -> None:
    telegrams = [v for v in load_corpus("p1.jsonl") if v["p1_kind"] == "telegram"]
    good = "".join(v["text"] for v in telegrams if v["valid"] is True)
    assert run_amshan("read", "-", stdin=good.encode("latin-1")).returncode == 0
    bad = "".join(v["text"] for v in telegrams if v["checks"]["p1_crc"] == "bad")
    result = run_amshan("read", "-", stdin=bad.encode("latin-1"))
    assert result.returncode == 1
    assert stderr_lines(result)[-1].endswith(
        "0 decoded; it looks like P1 (DSMR) text telegrams, but none checked out: a CRC that does not match,"
        " or wrong serial settings (115200 8N1; DSMR 2.2/3.0: 9600 7E1)"
    ), result.stderr


def test_mbus_frames_are_read_and_said_encrypted_without_the_key() -> None:
    vectors = [v for v in corpus_frames(layer="mbus", valid=True) if v["frames"]][:3]
    frames = b"".join(bytes.fromhex(vector["hex"]) for vector in vectors)
    result = run_amshan("read", "-", stdin=frames + bytes(600))
    assert result.returncode == 1
    assert stderr_lines(result)[-1].endswith(
        f"{sum(len(v['frames']) for v in vectors)} frames (0 invalid), 3 messages, 0 decoded;"
        " the messages are encrypted: pass the meter's key"
    ), result.stderr
    damaged = bytearray(frames)
    for index in range(20, len(damaged), 40):
        damaged[index] ^= 0x10
    result = run_amshan("read", "-", stdin=bytes(damaged))
    assert stderr_lines(result)[-1].endswith(
        "0 decoded; it looks like M-Bus frames (68 L L 68), but none checked out: damaged, or wrong serial"
        " settings"
    ), result.stderr


def test_encrypted_frames_are_said_to_be_encrypted_once_each() -> None:
    vectors = corpus_frames(layer="hdlc", valid=True, encrypted=True, meter="iskra")[:3]
    assert len(vectors) == 3
    data = b"".join(bytes.fromhex(vector["hex"]) for vector in vectors)
    result = run_amshan("read", "-", stdin=data)
    assert result.returncode == 1
    lines = stderr_lines(result)
    assert len(lines) == 5, result.stderr  # one report per message, the count, the summary
    for number, line in enumerate(lines[:3], 1):
        assert line.startswith(f"amshan: message {number} (")
        assert re.search(
            r"did not decode: encrypted \(general-glo-ciphering\): pass the meter's key to read it"
            r" \(system title 49534b[0-9a-f]{10} \(ISK\)\)$",
            line,
        ), line
        assert "e6e700db" in line  # the first bytes of the information field, as hex
    assert lines[3] == "amshan: 3 problems: 3 encrypted messages"
    assert lines[4].endswith(
        "3 frames (0 invalid), 3 messages, 0 decoded; the messages are encrypted: pass the meter's key"
    )


def test_an_undecodable_message_is_reported_once_in_one_style() -> None:
    [vector] = [v for v in load_corpus() if v["id"] == "no-kamstrup-list1-em001-2"]
    data = build_truncated_notification() + bytes.fromhex(vector["hex"])
    result = run_amshan("read", "-", stdin=data)
    assert result.returncode == 0
    assert stderr_lines(result) == [
        "amshan: message 1 (11 bytes, e6e7000f4000000000ffff) did not decode: damaged: a data-notification"
        " whose content does not parse as any known list",
        "amshan: 1 problem: 1 damaged message",
        f"amshan: {len(data)} bytes, 2 frames (0 invalid), 2 messages, 1 decoded",
    ]
    verbose = run_amshan("read", "-", "-v", stdin=build_truncated_notification() * 3)
    assert "(0 similar" not in verbose.stderr and "(0 more" not in verbose.stderr


def build_truncated_notification() -> bytes:
    return build_frame(b"\xe6\xe7\x00\x0f\x40\x00\x00\x00\x00\xff\xff")


def test_a_rejected_hex_line_is_shown_as_text() -> None:
    [vector] = [v for v in load_corpus() if v["id"] == "no-kamstrup-list1-em001-2"]
    result = run_amshan("read", "-", "--hex", stdin=f"{vector['hex']}\nthis is not hex\n".encode())
    assert result.returncode == 0
    assert stderr_lines(result)[0] == "amshan: line 2 is not hex, skipped: this is not hex"


def test_the_count_of_problems_beyond_the_first_ten_is_always_shown() -> None:
    result = run_amshan("read", "-", stdin=build_truncated_notification() * 25)
    assert result.returncode == 1
    lines = stderr_lines(result)
    assert len(lines) == 13, result.stderr  # ten, then one a minute: the 11th shows, the rest are counted
    assert lines[11] == "amshan: 25 problems: 25 damaged messages (14 not shown above)"
    assert lines[12].endswith(
        "25 messages, 0 decoded; the messages are damaged, or of a list no decoder knows"
    )


# --- --save and "received" -------------------------------------------------------------------


async def test_save_records_the_live_bytes_exactly_and_replays(tmp_path: Path) -> None:
    frames = bundled_frames("all")
    capture = tmp_path / "capture.bin"
    capture.write_bytes(b"already there\n")
    async with MeterSimulator(frames, interval=0.01, repeat=False) as meter:
        returncode, stdout, stderr = await run_bounded(
            str(AMSHAN), "read", f"tcp://127.0.0.1:{meter.port}", "--save", str(capture),
            "--count", str(len(frames)), timeout=TIMEOUT,
        )  # fmt: skip
        assert returncode == 0, stderr
    assert capture.read_bytes() == b"already there\n" + b"".join(frames)
    live = json_lines(stdout)
    replay = json_lines(run_amshan("read", str(capture)).stdout)
    assert len(live) == len(replay) == len(frames)
    for line, replayed in zip(live, replay):
        received = datetime.fromisoformat(line.pop("received"))
        assert received.utcoffset() is not None
        assert abs(time.time() - received.timestamp()) < TIMEOUT
        assert line == replayed and "received" not in replayed


def test_save_on_a_serial_port_keeps_the_garbage_too(tmp_path: Path) -> None:
    capture = tmp_path / "serial.bin"
    with PtyMeter(kamstrup_frames(), 9600) as meter:  # read at 2400: all of it garbled
        result = run_amshan("read", meter.device, "--save", str(capture), "--duration", "1.5")
    assert result.returncode == 1
    saved = capture.read_bytes()
    assert saved and all(byte & 0x80 for byte in saved)  # what a 2400-baud UART makes of 9600 baud
    assert stderr_lines(result)[-1].startswith(
        f"amshan: nothing decoded from serial port {meter.device} within 1.5 s: "
    )
    assert stderr_lines(result)[-1].endswith(
        f"; wrong serial settings? find them with: amshan probe {meter.device}"
    )


def test_save_of_a_hex_stream_is_the_text_as_read(tmp_path: Path) -> None:
    [vector] = [v for v in load_corpus() if v["id"] == "no-kamstrup-list1-em001-2"]
    text = f"# a comment\n{vector['hex']}\nnot hex\n{vector['hex']}".encode()
    capture = tmp_path / "copy.txt"
    result = run_amshan("read", "-", "--hex", "--save", str(capture), stdin=text)
    assert result.returncode == 0
    assert capture.read_bytes() == text


# --- exit status: simulate --once, a dead InfluxDB, Ctrl-C during the drain, the examples ------------------


def test_simulate_once_really_ends() -> None:
    process = subprocess.Popen(
        [str(AMSHAN), "simulate", "--once", "--interval", "0.01"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        match = re.search(r"listening on tcp://127\.0\.0\.1:(\d+)", process.stdout.readline())
        assert match
        # long enough for the replay, the loss and the refused reconnect even beside busy processes
        result = run_amshan("read", f"tcp://127.0.0.1:{match[1]}", "--duration", "6")
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    assert process.returncode == 0, stderr
    assert stdout.splitlines()[-1] == "amshan simulate: one replay done, stopped"
    messages = json_lines(result.stdout)
    assert len(messages) == len(bundled_vectors())  # one pass, no replay
    assert result.returncode == 0
    assert stderr_lines(result)[-1].startswith(
        f"amshan: host 127.0.0.1 port {match[1]} refused the connection"
    ), stderr_lines(result)[-3:]


def test_forward_to_a_dead_influxdb_says_what_it_waits_for_and_exits_1() -> None:
    url = f"http://127.0.0.1:{free_tcp_port()}"
    frames = b"".join(kamstrup_frames())
    result = run_amshan("forward-influxdb", "-", url, "meter", "--drain-timeout", "1", stdin=frames)
    assert result.returncode == 1
    lines = stderr_lines(result)
    assert (
        lines[0]
        == f"amshan: writing 2 buffered points to InfluxDB at {url}, waiting up to 1 s (--drain-timeout)"
    )
    assert lines[-1] == (
        f"amshan: InfluxDB at {url}: 0 points written, 2 not written, 0 dropped (buffer full),"
        " 0 rejected by the server; last error: ConnectionRefusedError: [Errno 111] Connection refused"
    )
    assert not any("drain time ran out" in line for line in lines)  # said once, by the command line


def test_ctrl_c_during_the_drain_says_a_second_one_abandons_the_points() -> None:
    url = f"http://127.0.0.1:{free_tcp_port()}"
    process = subprocess.Popen(
        [str(AMSHAN), "forward-influxdb", "-", url, "meter", "--drain-timeout", "60"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdin is not None and process.stderr is not None
        process.stdin.write(b"".join(kamstrup_frames()))
        process.stdin.close()
        first = process.stderr.readline().decode()
        assert first.startswith("amshan: writing 2 buffered points to InfluxDB"), first
        process.send_signal(signal.SIGINT)
        said = f"amshan: still writing 2 points to InfluxDB at {url}; press Ctrl-C again to abandon them\n"
        lines = [process.stderr.readline().decode()]
        while lines[-1] not in (said, "") and len(lines) < 5:  # the failed writes are said between
            lines.append(process.stderr.readline().decode())
        assert lines[-1] == said, lines
        process.send_signal(signal.SIGINT)
        rest = process.stderr.read().decode()
        assert process.wait(timeout=TIMEOUT) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    assert rest.splitlines()[-1] == f"amshan: abandoned 2 points not written to InfluxDB at {url}"


def test_a_missing_database_is_named(influxd: InfluxServer) -> None:  # noqa: F811 - the fixture
    frames = b"".join(kamstrup_frames())
    result = run_amshan(
        "forward-influxdb", "-", influxd.url, "nosuchdb", "--drain-timeout", "1", stdin=frames
    )
    assert result.returncode == 1
    assert stderr_lines(result)[-1] == (
        f"amshan: InfluxDB at {influxd.url}: 0 points written, 2 not written, 0 dropped (buffer full),"
        " 0 rejected by the server; the database 'nosuchdb' does not exist:"
        " create it (influx -execute 'CREATE DATABASE nosuchdb') and run again"
    )


def test_decode_file_example_help_and_missing_file() -> None:
    script = str(EXAMPLES / "decode_file.py")
    shown = subprocess.run(
        [sys.executable, script, "--help"], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert shown.returncode == 0 and shown.stdout.startswith("usage: decode_file.py")
    missing = subprocess.run(
        [sys.executable, script, "/no/such/capture.bin"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert (missing.returncode, missing.stderr.splitlines()) == (
        2,
        ["decode_file.py: cannot read /no/such/capture.bin: No such file or directory"],
    )


async def test_influxdb_example_exits_1_when_points_are_not_written() -> None:
    url = f"http://127.0.0.1:{free_tcp_port()}"
    async with MeterSimulator(kamstrup_frames(), interval=0.01, repeat=False) as meter:
        returncode, stdout, _ = await run_bounded(
            sys.executable, str(EXAMPLES / "influxdb_forward.py"), f"tcp://127.0.0.1:{meter.port}", url,
            "meter", "--count", "2", "--drain-timeout", "1", timeout=TIMEOUT,
        )  # fmt: skip
    assert returncode == 1
    assert stdout.splitlines()[-1] == "0 points written, 2 not written"


# --- probe ------------------------------------------------------------------------------------------------


def test_probe_finds_the_settings_of_a_meter_behind_a_pty() -> None:
    with PtyMeter(kamstrup_frames(), 38400) as meter:
        result = run_amshan("probe", meter.device, "--seconds", "1.5")
        assert meter.sent_matching and meter.sent_garbled
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"probing serial port {meter.device}, up to 1.5 s per setting"
    tried = {line.split()[0] + " " + line.split()[1]: line for line in lines[1:7]}
    for wrong in ("2400 8E1", "2400 8N1", "115200 8N1", "9600 8N1"):
        assert re.fullmatch(rf"  {wrong} +[\d,]+ bytes read, 0 valid frames", tried[wrong]), tried[wrong]
    assert (
        tried["9600 7E1"] == "  9600 7E1   refused by the port (Invalid argument): it cannot do that, skipped"
    )
    # It stops once two valid frames came; one read of a loaded pty may hold more: every one read is counted.
    assert re.fullmatch(
        r"  38400 8N1  [\d,]+ bytes read, (?P<n>[2-9]|\d\d+) valid frames, (?P=n) messages, (?P=n) decoded,"
        r" HDLC (?P=n): meter Kamstrup, list Kamstrup_V0001, type 6841131BN243101040, id 5706567202753025",
        tried["38400 8N1"],
    ), tried["38400 8N1"]
    assert lines[7:] == [
        "found: 38400 8N1 gives valid frames; read the meter with:",
        f"  amshan read {meter.device} --baudrate 38400 --parity N",
    ]
    with PtyMeter(kamstrup_frames(), 38400) as meter:  # and that command reads it
        read = run_amshan("read", meter.device, "--baudrate", "38400", "--parity", "N", "--count", "2")
    assert read.returncode == 0 and len(json_lines(read.stdout)) == 2


def test_probe_says_when_no_setting_works() -> None:
    with PtyMeter(kamstrup_frames(), 1200) as meter:  # a rate probe does not try: garbage at every setting
        result = run_amshan("probe", meter.device, "--seconds", "0.5")
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == (
        "no setting gave a valid frame: check the cable, and that the meter's HAN port is enabled"
        " (grid operators open it on request)"
    )


async def test_probe_a_network_reader() -> None:
    async with MeterSimulator(kamstrup_frames(), interval=0.05) as meter:
        address = f"tcp://127.0.0.1:{meter.port}"
        returncode, stdout, stderr = await run_bounded(str(AMSHAN), "probe", address, timeout=TIMEOUT)
    assert returncode == 0, stderr
    lines = stdout.splitlines()
    assert (
        lines[0]
        == f"probing host 127.0.0.1 port {address[16:]} for up to 12 s (its serial settings are the server's)"
    )
    assert (
        lines[1].startswith("  ")
        and ", 2 valid frames, 2 messages, 2 decoded, HDLC 2: meter Kamstrup" in lines[1]
    )
    assert lines[2:] == [
        "found: this port gives valid frames; read the meter with:",
        f"  amshan read {address}",
    ]


def test_probe_without_a_device_lists_the_serial_ports() -> None:
    result = run_amshan("probe")
    devices = sorted(port.device for port in list_ports.comports())
    if devices:
        assert result.returncode == 0
        assert [line.split()[0] for line in result.stdout.splitlines()[:-1]] == devices
        assert result.stdout.splitlines()[-1] == f"probe one with: amshan probe {devices[0]}"
    else:
        assert (result.returncode, stderr_lines(result)) == (
            1,
            [
                "amshan: no serial ports found: plug in the meter's dongle, or probe a network reader with:"
                " amshan probe tcp://HOST:PORT"
            ],
        )


def test_probe_of_a_missing_device() -> None:
    result = run_amshan("probe", "/dev/ttyUSB9", "--seconds", "0.2")
    assert (result.returncode, stderr_lines(result)) == (
        1,
        [
            "amshan: cannot open serial port /dev/ttyUSB9: no such device;"
            " check the name (`amshan probe` lists serial ports)"
        ],
    )
