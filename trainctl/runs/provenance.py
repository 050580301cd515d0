"""The state of the code a run used: each user component (a `_target_` in the config) by its module file's
sha256 and the git commit, branch and uncommitted diff of the repository holding it, found without
importing user code."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

from trainctl.runs.manifest import sha256_of

GIT_TIMEOUT_S = 5


def targets(tree: Any, prefix: str = "") -> dict[str, str]:
    """Every `_target_` string of the config, by the dotted key of the section that holds it."""
    found: dict[str, str] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key == "_target_" and isinstance(value, str):
                found[prefix.rstrip(".") or "_target_"] = value
            else:
                found |= targets(value, f"{prefix}{key}.")
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            found |= targets(value, f"{prefix}{index}.")
    return found


def module_file(target: str) -> Path | None:
    """The file of the deepest module that `target` ("pkg.module.Class" or "pkg.module:Class") names:
    from sys.modules when it is imported, else found on sys.path by walking the packages' folders
    (importlib.util.find_spec of the top-level name runs no code)."""
    parts = target.replace(":", ".").split(".")
    for end in range(len(parts), 0, -1):
        module = sys.modules.get(".".join(parts[:end]))
        if module is not None and getattr(module, "__file__", None):
            return Path(str(module.__file__)).resolve()
    try:
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        return None
    found = Path(spec.origin)
    folders = list(spec.submodule_search_locations or [])
    for part in parts[1:]:
        step = next(
            (
                c
                for folder in folders
                for c in (Path(folder) / f"{part}.py", Path(folder) / part / "__init__.py")
                if c.is_file()
            ),
            None,
        )
        if step is None:
            break
        found = step
        folders = [str(step.parent)] if step.name == "__init__.py" else []
    return found.resolve()


def git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def repository(folder: Path) -> dict[str, Any] | None:
    """The git state of the repository around `folder`: root, commit, branch, dirty flag, untracked files
    and the uncommitted diff (against HEAD); None outside a repository."""
    top = git(folder, "rev-parse", "--show-toplevel")
    if top is None:
        return None
    commit = (git(folder, "rev-parse", "HEAD") or "").strip() or None  # a repository without commits: None
    status = git(folder, "status", "--porcelain") or ""
    untracked = [line[3:] for line in status.splitlines() if line.startswith("??")]
    return {
        "root": top.strip(),
        "commit": commit,
        "branch": (git(folder, "rev-parse", "--abbrev-ref", "HEAD") or "").strip() or None,
        "dirty": bool(status.strip()),
        "untracked": untracked,
        "diff": (git(folder, "diff", "HEAD") if commit else git(folder, "diff")) or "",
    }


def code_state(tree: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The record's code section for the config `tree` and the patches to keep beside it (file name ->
    uncommitted diff): one entry per user component, one per repository they live in."""
    components: dict[str, Any] = {}
    repositories: dict[str, Any] = {}
    patches: dict[str, str] = {}
    for key, target in sorted(targets(tree).items()):
        entry: dict[str, Any] = {"target": target}
        path = module_file(target)
        if path is None:
            entry["file"] = None
            entry["note"] = "module not found on sys.path"
            components[key] = entry
            continue
        entry["file"] = str(path)
        try:
            entry["sha256"] = sha256_of(path)
        except OSError as exc:
            entry["note"] = f"unreadable: {exc}"
        repo = repository(path.parent)
        if repo is not None:
            entry["repository"] = repo["root"]
            if repo["root"] not in repositories:
                diff = repo.pop("diff")
                repo["diff_sha256"] = hashlib.sha256(diff.encode()).hexdigest() if diff else None
                if diff:
                    name = f"{Path(repo['root']).name or 'repository'}-{len(repositories)}.patch"
                    patches[name] = diff
                    repo["patch"] = name
                repositories[repo["root"]] = repo
        components[key] = entry
    return {"components": components, "repositories": repositories}, patches
