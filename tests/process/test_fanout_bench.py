"""The fan-out benchmark (bench/fanout.py) on a small count, so its line cannot rot: real local hosts, each its own
process, on one Azurite, the simulators in their own process; every tenant read exactly once per run."""

from __future__ import annotations

import re

import pytest

from bench import fanout
from dev.host.azurite import ALL_SERVICES
from tests.conftest import require_service

LINE = re.compile(r"secure score fan-out: tenants = (\d+), workers = (\d+), Graph reads = (\d+) \(limit (\d+)\), "
                  r"wall = \d+\.\d\d s")  # fmt: skip


def test_the_fanout_bench_prints_one_line_per_worker_count_with_every_tenant_read_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    if not ALL_SERVICES.exists():
        require_service("Azurite", f"{ALL_SERVICES} is missing (npm ci --prefix tools)")
    runs = fanout.main(20, (1, 2), 0.0)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("secure score fan-out: ")]
    assert [run.line() for run in runs] == printed
    assert [LINE.fullmatch(line) is not None for line in printed] == [True, True], printed
    for workers, line in zip((1, 2), printed, strict=True):
        match = LINE.fullmatch(line)
        assert match is not None
        tenants, shown_workers, reads, limit = map(int, match.groups())
        assert (tenants, shown_workers) == (20, workers)
        assert reads == limit == 20 * 4, line  # per tenant its scores and its 300 profiles in 3 pages, once
