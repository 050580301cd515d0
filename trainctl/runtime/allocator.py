"""glibc malloc thresholds for a training process: keep the freed buffers of one step for the next."""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc serves allocations above a threshold (128 KiB, raised as large blocks are freed) with mmap and
# gives free memory at the heap's top back to the kernel. A training step allocates and frees the same
# large activation and gradient buffers every step, so their pages are unmapped and faulted in again.
# ResNet-20 (conf=resnet_cifar, batch 64 x 4 views, 2 threads), 40- and 80-step runs on a 2-core box:
#
#   malloc settings                    page faults of the job   samples/s
#   glibc's defaults, tensors          0.28-0.64 M              1.00x
#   glibc's defaults, a JPEG folder    0.93-1.73 M
#   the thresholds below, tensors      0.23-0.26 M              1.13x (0.92-1.26), median of 6 alternating
#   the thresholds below, JPEG folder  0.17-0.38 M              pairs (`python -m bench allocator`)
#
# So: buffers up to 32 MiB (glibc's largest mmap threshold) come from the heap, and up to 256 MiB of
# free heap stays mapped; PyTorch's CPU tuning guide gets the same effect by preloading jemalloc or
# tcmalloc. The cost is memory kept in the heap: `python -m bench estimate`, one run before and one after,
# peak RSS +8% on ResNet-20 (1,307 to 1,418 MB) and +16% on MiniLM (1,819 to 2,118 MB). DataLoader
# workers start from a forkserver and keep glibc's defaults (their buffers are small).
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 256 * 2**20
# Variables that mean the user chose an allocator or its settings: theirs wins. TRAINCTL_MALLOC=glibc
# keeps glibc's own defaults (what `python -m bench allocator` compares against).
OPT_OUT = "TRAINCTL_MALLOC"
USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


@dataclass(frozen=True)
class AllocatorChoice:
    """Whether to set the thresholds in this process, and why."""

    tune: bool
    reason: str


def allocator_choice(environ: Mapping[str, str] | None = None, libc: str | None = None) -> AllocatorChoice:
    """Tune glibc's malloc unless this is not glibc or the user set an allocator or its variables."""
    environ = os.environ if environ is None else environ
    libc = platform.libc_ver()[0] if libc is None else libc
    if libc != "glibc":
        return AllocatorChoice(False, f"not glibc ({libc or 'unknown C library'}): its own allocator")
    if environ.get(OPT_OUT) == "glibc":
        return AllocatorChoice(False, f"{OPT_OUT}=glibc: glibc's defaults")
    preload = environ.get("LD_PRELOAD", "")
    chosen = next((name for name in OTHER_ALLOCATORS if name in preload), None)
    if chosen:
        return AllocatorChoice(False, f"{chosen} preloaded by the user")
    set_by_user = [name for name in USER_VARIABLES if name in environ]
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        set_by_user.append("GLIBC_TUNABLES")
    if set_by_user:
        return AllocatorChoice(False, f"set by the user ({', '.join(set_by_user)})")
    mib = 2**20
    return AllocatorChoice(
        True, f"glibc malloc: mmap threshold {MMAP_THRESHOLD // mib} MiB, trim {TRIM_THRESHOLD // mib} MiB"
    )


def tune_allocator(choice: AllocatorChoice | None = None) -> AllocatorChoice:
    """Apply `choice` (default: allocator_choice()) to this process."""
    choice = allocator_choice() if choice is None else choice
    if not choice.tune:
        return choice
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        return AllocatorChoice(False, "glibc refused the malloc thresholds: its defaults stay")
    return choice
