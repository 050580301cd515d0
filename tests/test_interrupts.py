"""A Ctrl-C that trainctl handled ends `python -m trainctl` with trainctl's exit code, not by SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

# Ctrl-C lands while code built from a string runs (as a dataclass's methods are, at import), the
# program catches it and exits 130, as trainctl's error handler does.
MAIN = """
import sys
{install}
try:
    exec("import os, signal\\nos.kill(os.getpid(), signal.SIGINT)\\nfor _ in range(10**6): pass")
except KeyboardInterrupt as caught:
    print(type(caught).__name__, file=sys.stderr)
    sys.exit(130)
"""


def run_module(tmp_path: Path, install: str) -> subprocess.CompletedProcess[str]:
    package = tmp_path / "ctrl_c_app"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(MAIN.format(install=install))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    return subprocess.run(
        [sys.executable, "-m", "ctrl_c_app"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_handled_ctrl_c_keeps_the_exit_code(tmp_path: Path) -> None:
    ours = run_module(tmp_path / "ours", "from trainctl.interrupts import handle_ctrl_c; handle_ctrl_c()")
    assert (ours.returncode, ours.stderr.strip()) == (130, "Interrupted")
    plain = run_module(tmp_path / "plain", "")  # Python's own handler: what the guard is for
    assert plain.stderr.strip() == "KeyboardInterrupt"
    if sys.version_info[:2] in ((3, 11), (3, 12)):
        assert plain.returncode == -signal.SIGINT


def test_an_ignored_sigint_stays_ignored() -> None:
    code = (
        "import signal; from trainctl.interrupts import handle_ctrl_c; handle_ctrl_c(); "
        "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"
    )
    ignored = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert ignored.stdout.strip() == "True"


def test_the_cli_installs_it() -> None:
    code = (
        "import signal, sys; sys.argv = ['trainctl', '--version']; from trainctl.cli import app; "
        "from trainctl import interrupts\ntry:\n    app.main()\nexcept SystemExit:\n    pass\n"
        "print(signal.getsignal(signal.SIGINT) is interrupts.raise_interrupted)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip().endswith("True"), result.stdout + result.stderr
