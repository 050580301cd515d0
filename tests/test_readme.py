"""The README's doc test: the example blocks marked `<!-- readme-test: run -->` run in order, as written,
in an empty folder (runs go to its ./runs); blocks marked `<!-- readme-test: output -->` show a command
(`$ ...`) and what it prints, which must match. So the README cannot drift from the product."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

README = REPO / "README.md"
BLOCK = re.compile(r"<!-- readme-test: (run|output) -->\s*\n```[a-z]*\n(.*?)```", re.S)


def marked_blocks(text: str) -> list[tuple[str, str]]:
    """(kind, body) of every marked code block, in the README's order."""
    return [(kind, body) for kind, body in BLOCK.findall(text)]


def commands(body: str) -> list[str]:
    """The block's commands, one per line (a line ending in a backslash continues on the next)."""
    joined = body.replace("\\\n", " ")
    return [
        line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def shell_env(home: Path) -> dict[str, str]:
    """A user's shell: the project's trainctl on PATH, no runs root or data folder of the tests'."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRAINCTL_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        HOME=str(home),
        COLUMNS="100",
    )
    return env


def test_the_readme_marks_its_cheap_examples() -> None:
    kinds = [kind for kind, _ in marked_blocks(README.read_text())]
    assert kinds.count("run") >= 2 and "output" in kinds
    first_steps = marked_blocks(README.read_text())[0][1]
    assert "trainctl train  " in first_steps and "trainctl eval latest" in first_steps


@pytest.mark.slow
def test_readme_examples_run_in_order_as_written(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(REPO / "examples", work / "examples")  # the README's user project, as in a checkout
    env = shell_env(tmp_path)
    ran = []
    for kind, body in marked_blocks(README.read_text()):
        if kind == "run":
            for command in commands(body):
                result = subprocess.run(
                    ["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=300
                )
                assert result.returncode == 0, (
                    f"README command failed: {command}\n{result.stdout}\n{result.stderr}"
                )
                ran.append(command)
        else:
            prompt, *expected = body.rstrip("\n").splitlines()
            assert prompt.startswith("$ "), prompt
            result = subprocess.run(
                ["bash", "-c", prompt[2:]], cwd=work, env=env, capture_output=True, text=True, timeout=300
            )
            shown = [line.rstrip() for line in (result.stdout + result.stderr).rstrip("\n").splitlines()]
            assert shown == [line.rstrip() for line in expected], f"README output drifted for {prompt}"
            ran.append(prompt)
    assert len(ran) >= 10
    assert (work / "runs" / "latest").is_symlink() and (work / "my.yaml").is_file()
    assert list((work / "runs" / "reports").glob("*/report.md"))  # `trainctl report runs/mlp_digits/*`
