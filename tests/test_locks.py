"""The lock files: packages and hashes only, valid on every Python the README promises."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCKS = ["requirements.txt", "requirements-dev.txt"]
# An option line (`--extra-index-url`, `--find-links`, `-i` ...) other than a hash, or any
# local path or URL, in a line or a comment: a clean machine has none of those folders.
_OPTION = re.compile(r"^\s*-(?!-hash=)")
_LOCAL = re.compile(r"file:|(^|[\s=])/(opt|tmp|home|root|usr|var|srv|mnt)/|https?://")


@pytest.mark.parametrize("lock", LOCKS)
def test_a_lock_holds_only_packages_and_hashes(lock: str) -> None:
    lines = (PROJECT_ROOT / lock).read_text().splitlines()
    assert any(line.startswith("sqlalchemy==") for line in lines)
    offending = [line for line in lines if _OPTION.match(line) or _LOCAL.search(line)]
    assert offending == [], f"{lock}: lines naming an index or a local path"


@pytest.mark.parametrize("lock", LOCKS)
def test_a_lock_is_universal(lock: str) -> None:
    """Resolved for every Python >= 3.11 with markers, not for the machine that made it:
    redis needs async-timeout below 3.11.3 (Debian 12's Python is 3.11.2)."""
    text = (PROJECT_ROOT / lock).read_text()
    assert re.search(r"^async-timeout==\S+ ; python_full_version < '3\.11\.3'", text, re.M)
    assert "--universal" in text.splitlines()[1]  # the command that made it
