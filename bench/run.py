"""`python3 bench/run.py [options]`: the one benchmark command (bench/README.md).

Only the standard library here: this makes sure the repository's `.venv` exists (the
README's install step), then re-executes the harness with its interpreter, where our
service's dependencies (asyncpg, argon2, redis, uvloop) are importable.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
NEEDED = "import asyncpg, argon2, hypercorn, redis, service.config"


def venv_ready() -> bool:
    if not VENV_PYTHON.exists():
        return False
    check = subprocess.run(  # noqa: S603 - fixed argv
        [str(VENV_PYTHON), "-c", NEEDED], cwd=ROOT, capture_output=True, check=False
    )
    return check.returncode == 0


def make_venv() -> None:
    print("creating .venv with the locked requirements ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)  # noqa: S603
    subprocess.run(  # noqa: S603 - fixed argv
        [
            str(VENV_PYTHON),
            "-m",
            "pip",
            "install",
            "-q",
            "--require-hashes",
            "-r",
            str(ROOT / "requirements.txt"),
        ],
        check=True,
    )


def main() -> None:
    if not venv_ready():
        make_venv()
    os.chdir(ROOT)  # `-m bench.harness` finds the package from the repository root
    os.environ["BENCH_COMMAND"] = shlex.join(["python3", "bench/run.py", *sys.argv[1:]])
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), "-m", "bench.harness", *sys.argv[1:]])  # noqa: S606


if __name__ == "__main__":
    main()
