"""The OpenMP wait policy: libgomp's default when the job's threads fit the free CPUs, PASSIVE when not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trainctl.runtime.threads import OURS, apply_wait_policy, runnable_elsewhere, wait_policy


def test_a_job_that_fits_a_quiet_machine_keeps_libgomps_default() -> None:
    policy = wait_policy(2, environ={}, cpus=2, busy_elsewhere=0)
    assert policy.env == {}
    assert "libgomp default" in policy.reason


def test_another_busy_process_makes_the_wait_passive() -> None:
    policy = wait_policy(2, environ={}, cpus=2, busy_elsewhere=1)
    assert policy.env == {"OMP_WAIT_POLICY": "PASSIVE", OURS: "1"}
    assert "1 other process" in policy.reason


def test_more_threads_than_cpus_is_passive_on_a_quiet_machine() -> None:
    # trainer.threads=2 on 2 local workers: 4 threads on 2 CPUs
    assert wait_policy(4, environ={}, cpus=2, busy_elsewhere=0).env["OMP_WAIT_POLICY"] == "PASSIVE"


def test_the_default_budget_counts_every_usable_cpu() -> None:
    assert wait_policy(None, environ={}, cpus=8, busy_elsewhere=0).env == {}
    assert wait_policy(None, environ={}, cpus=8, busy_elsewhere=3).env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert wait_policy(6, environ={}, cpus=8, busy_elsewhere=2).env == {}  # 6 threads on 6 free CPUs


def test_one_thread_never_waits_so_needs_no_policy() -> None:
    assert wait_policy(1, environ={}, cpus=1, busy_elsewhere=5).env == {}


@pytest.mark.parametrize("variable", ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT"])
def test_the_users_own_setting_wins(variable: str) -> None:
    environ = {variable: "ACTIVE" if variable == "OMP_WAIT_POLICY" else "1000"}
    policy = wait_policy(4, environ=environ, cpus=2, busy_elsewhere=3)
    assert policy.env == {}
    apply_wait_policy(policy, environ)
    assert environ == {variable: environ[variable]}


def test_a_policy_trainctl_set_earlier_is_replaced_not_taken_for_the_users() -> None:
    environ: dict[str, str] = {}
    apply_wait_policy(wait_policy(2, environ=environ, cpus=2, busy_elsewhere=1), environ)  # cli: busy
    assert environ["OMP_WAIT_POLICY"] == "PASSIVE"
    later = wait_policy(2, environ=environ, cpus=2, busy_elsewhere=0)  # the launcher: quiet by then
    apply_wait_policy(later, environ)
    assert environ == {}


def test_runnable_processes_come_from_proc_loadavg(tmp_path: Path) -> None:
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("1.50 0.80 0.30 3/412 12345\n")  # 3 runnable, this process among them
    assert runnable_elsewhere(loadavg) == 2
    loadavg.write_text("garbage")
    assert runnable_elsewhere(loadavg) == 0
    assert runnable_elsewhere(tmp_path / "missing") == 0


def test_the_launch_environment_is_restored_after_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from trainctl.runtime.launch import elastic

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv(OURS, "1")  # set by cli main on a busy box
    quiet = lambda threads: wait_policy(threads, cpus=2, busy_elsewhere=0)  # noqa: E731
    monkeypatch.setattr(elastic, "wait_policy", quiet)
    before = dict(os.environ)
    with elastic.worker_environment(SimpleNamespace(threads_per_worker=1), 2):
        assert "OMP_WAIT_POLICY" not in os.environ  # 2 workers x 1 thread fit 2 quiet CPUs
        assert os.environ["OMP_NUM_THREADS"] == "1"
    assert dict(os.environ) == before
