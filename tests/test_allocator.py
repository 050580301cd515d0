"""glibc malloc thresholds of a training process: set unless the user chose an allocator or its settings."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from trainctl.runtime.allocator import allocator_choice

GLIBC = platform.libc_ver()[0] == "glibc"


def test_glibc_without_user_settings_is_tuned() -> None:
    choice = allocator_choice(environ={}, libc="glibc")
    assert choice.tune
    assert "32 MiB" in choice.reason


@pytest.mark.parametrize(
    "environ",
    [
        {"MALLOC_TRIM_THRESHOLD_": "0"},
        {"MALLOC_MMAP_THRESHOLD_": "131072"},
        {"MALLOC_TOP_PAD_": "0"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"},
        {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
        {"LD_PRELOAD": "/opt/lib/libtcmalloc_minimal.so.4"},
        {"TRAINCTL_MALLOC": "glibc"},
    ],
)
def test_the_users_own_allocator_settings_win(environ: dict[str, str]) -> None:
    choice = allocator_choice(environ=environ, libc="glibc")
    assert not choice.tune
    assert "user" in choice.reason or "glibc's defaults" in choice.reason


def test_unrelated_tunables_and_preloads_do_not_count_as_a_choice() -> None:
    assert allocator_choice(
        environ={"GLIBC_TUNABLES": "glibc.rtld.nns=2", "LD_PRELOAD": "libfoo.so"}, libc="glibc"
    ).tune


def test_other_c_libraries_keep_their_allocator() -> None:
    assert not allocator_choice(environ={}, libc="").tune
    assert not allocator_choice(environ={}, libc="musl").tune


# A step's pattern: three 16 MiB buffers (activations) allocated, written and freed, 20 times; the page
# faults of the last 19 rounds. glibc's default gives the 48 MiB back to the kernel at each round's end
# (above its trim threshold) and faults them in again; tuned, they stay mapped for the next round.
FAULTS = """
import ctypes, json, resource, sys
from trainctl.runtime.allocator import tune_allocator
if sys.argv[1] == "tuned":
    assert tune_allocator().tune
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 16 * 2**20
def touch():
    blocks = [libc.malloc(size) for _ in range(3)]
    for block in blocks:
        ctypes.memset(block, 1, size)
    for block in blocks:
        libc.free(block)
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(19):
    touch()
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before))
"""


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's; this C library keeps its own allocator")
def test_tuned_process_reuses_a_freed_block_instead_of_faulting_it_in_again() -> None:
    def faults(mode: str) -> int:
        env = {"PATH": "/usr/bin:/bin"}  # no user allocator variables
        done = subprocess.run(
            [sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, env=env, check=True
        )
        return json.loads(done.stdout)

    default, tuned = faults("default"), faults("tuned")
    pages = 19 * 3 * 4096
    assert default > pages * 0.9, default  # every round faults its buffers in
    assert tuned < pages * 0.1, tuned


def test_the_record_keeps_the_allocator_variables_beside_the_thread_ones() -> None:
    from trainctl.runs.machine import result_env

    environ = {
        "MALLOC_ARENA_MAX": "2",
        "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0",
        "LD_PRELOAD": "libjemalloc.so.2",
        "TRAINCTL_MALLOC": "glibc",
        "OMP_NUM_THREADS": "2",
        "HOME": "/root",
    }
    assert set(result_env(environ)) == set(environ) - {"HOME"}
