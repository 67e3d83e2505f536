"""The fuzz harness's checks over its seeds (all real corpus frames) and every input that once failed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))
import fuzz_amshan

REGRESSIONS = sorted(fuzz_amshan.REGRESSIONS_DIR.iterdir())


def test_every_seed_passes_the_fuzz_checks() -> None:
    seeds = list(fuzz_amshan.seeds())
    assert len(seeds) > 600
    assert {seed[0] for seed in seeds} == {0, 1, 2, 3, 4}
    for seed in seeds:
        fuzz_amshan.check_input(seed)


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_input_the_fuzzer_once_failed_on_passes(path: Path) -> None:
    fuzz_amshan.check_input(path.read_bytes())


def test_the_frame_oracle_accepts_the_real_frame_and_rejects_a_bad_checksum() -> None:
    assert fuzz_amshan._is_verified_frame(fuzz_amshan.SENTINEL[1:-1])
    assert not fuzz_amshan._is_verified_frame(fuzz_amshan.SENTINEL[1:-3] + b"\x00\x00")
    sentinel = fuzz_amshan.SENTINEL
    assert not fuzz_amshan._is_verified_frame(sentinel[1:9] + bytes((sentinel[9] ^ 1,)) + sentinel[10:-1])


def test_an_unclosed_twin_of_the_sentinel_does_not_swallow_it() -> None:
    fuzz_amshan.check_input(bytes((0, 255)) + fuzz_amshan.SENTINEL[:-1] + b"\x7d")
