"""The GitHub Actions workflow, checked offline: schema, pinned actions, and that it runs
the README's own test command against the same PostgreSQL and Redis as compose.yml."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from service.__main__ import PROJECT_ROOT
from tests.test_compose import services

WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "ci.yml"


def workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def readme_test_command() -> str:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("**Test**", 1)[1]
    return re.search(r"```bash\n(.+?)\n```", section, re.DOTALL)[1].strip()  # type: ignore[index]


def test_the_workflow_matches_the_github_workflow_schema() -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            str(WORKFLOW),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_test_job_runs_the_readme_command_with_real_servers() -> None:
    job = workflow()["jobs"]["test"]
    runs = [step.get("run", "").strip() for step in job["steps"]]
    command = readme_test_command()
    assert command in runs
    assert command in (PROJECT_ROOT / ".ci" / "run").read_text()
    # The same server versions as the compose stack, reached by their service names.
    compose = services()
    assert job["services"]["postgres"]["image"] == compose["postgres"]["image"]
    assert job["services"]["redis"]["image"] == compose["redis"]["image"]
    assert job["env"]["TEST_DATABASE_URL"].startswith("postgresql://postgres@postgres:5432/")
    assert job["env"]["TEST_REDIS_URL"].startswith("redis://redis:6379/")
    installs = " ".join(run for run in runs if "apt-get install" in run)
    for package in ("chromium", "caddy", "prometheus"):
        assert package in installs, package


def test_lint_and_image_jobs() -> None:
    jobs = workflow()["jobs"]
    lint = " ".join(step.get("run", "") for step in jobs["lint"]["steps"])
    for tool in ("ruff check", "ruff format --check", "hadolint Dockerfile", "compose-spec"):
        assert tool in lint, tool
    build = next(
        step for step in jobs["image"]["steps"] if "build-push-action" in step.get("uses", "")
    )
    assert build["with"]["push"] is False and build["with"]["context"] == "."


def test_every_job_is_bounded_and_every_action_pinned() -> None:
    for name, job in workflow()["jobs"].items():
        assert 0 < job["timeout-minutes"] <= 30, name
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+(\.\d+)*", step["uses"]), step["uses"]
    assert workflow()["permissions"] == {"contents": "read"}
