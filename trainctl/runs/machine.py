"""The software and hardware a run ran on: Python, torch and its CUDA/cuDNN/NCCL, every installed
distribution, the environment variables that change results or speed, determinism settings; CPU,
memory and GPUs."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# Environment variables that change what a run computes or how fast (exact names, and prefixes ending in _)
RESULT_ENV = (
    "OMP_",
    "MKL_",
    "GOMP_",
    "KMP_",
    "NCCL_",
    "TRAINCTL_",
    "CUDA_VISIBLE_DEVICES",
    "CUBLAS_WORKSPACE_CONFIG",
    "SLURM_JOB_ID",
    "PYTHONHASHSEED",
    "TORCH_NUM_THREADS",
    "MALLOC_",
    "GLIBC_TUNABLES",
    "LD_PRELOAD",
)


def installed_packages() -> list[str]:
    """Every installed distribution as `name==version`, sorted by name (the first of a name on the path)."""
    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").strip()
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return [seen[key] for key in sorted(seen)]


def packages_hash(lines: list[str]) -> str:
    return hashlib.sha256("".join(f"{line}\n" for line in lines).encode()).hexdigest()


def result_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    environ = dict(os.environ if environ is None else environ)
    return {
        key: value
        for key, value in sorted(environ.items())
        if any(key.startswith(p) if p.endswith("_") else key == p for p in RESULT_ENV)
    }


def torch_versions() -> dict[str, Any]:
    """torch's version and, when it was built with them and they are present, CUDA, cuDNN and NCCL's."""
    import torch

    found: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda}
    with contextlib.suppress(Exception):
        found["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    with contextlib.suppress(Exception):
        if torch.cuda.is_available():
            found["nccl"] = ".".join(str(v) for v in torch.cuda.nccl.version())
    return found


def determinism(seed: int) -> dict[str, Any]:
    """The settings that decide whether two runs compute the same numbers."""
    import torch

    return {
        "seed": seed,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
    }


def environment(packages: list[str], seed: int) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        **torch_versions(),
        "packages": len(packages),
        "packages_sha256": packages_hash(packages),
        "env": result_env(),
        "determinism": determinism(seed),
    }


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def memory_bytes() -> int | None:
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return None


def gpu_driver() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip().splitlines()[0]
    return None


def gpus() -> list[dict[str, Any]]:
    import torch

    if not torch.cuda.is_available():
        return []
    listed = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        listed.append(
            {"name": props.name, "memory": props.total_memory, "capability": f"{props.major}.{props.minor}"}
        )
    return listed


def hardware(threads_per_worker: int, world: dict[str, Any]) -> dict[str, Any]:
    """This node's CPU, memory and GPUs, and how the run used them."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    found_gpus = gpus()
    return {
        "host": platform.node(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_usable": affinity,
        "threads_per_worker": threads_per_worker,
        "memory": memory_bytes(),
        "gpus": found_gpus,
        "gpu_count": len(found_gpus),
        "gpu_driver": gpu_driver() if found_gpus else None,
        "world": world,
    }
