"""Which passwords an account may have, and the one form a password is hashed in.

The common passwords are zxcvbn's list: the 30,000 most frequent in leaked password
dumps, lower-cased, shipped with the library (nothing is fetched at run time).
"""

from __future__ import annotations

import importlib.util
import unicodedata
from pathlib import Path

MIN_LENGTH = 8


def _zxcvbn_common_passwords() -> frozenset[str]:
    """zxcvbn's list of common passwords, read from its `frequency_lists` module alone.

    Importing the package (`import zxcvbn`) also builds every matcher it has: 17 MB per
    process, and served API workers then spent about 10% more CPU on every request
    (GET /products/1, measured with wrk against the same code without it). This runs that
    one module's code and keeps only the passwords (about 2 MB).
    """
    package = importlib.util.find_spec("zxcvbn")
    if package is None or not package.submodule_search_locations:
        raise ImportError("zxcvbn is not installed")
    path = Path(next(iter(package.submodule_search_locations))) / "frequency_lists.py"
    spec = importlib.util.spec_from_file_location("_zxcvbn_frequency_lists", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return frozenset(module.FREQUENCY_LISTS["passwords"])


# Built once per process, at import: lookups are O(1).
COMMON_PASSWORDS = _zxcvbn_common_passwords()


def normalize_password(password: str) -> str:
    """NFKC, so that the same password typed on another keyboard (the fullwidth letters
    of a CJK keyboard, a ligature, a composed or decomposed accent) is the same password."""
    return unicodedata.normalize("NFKC", password)


def password_problem(password: str, *, email: str, username: str) -> str | None:
    """Why this password is refused for the account (the message for the `password`
    field), or None when it is acceptable."""
    normalized = normalize_password(password)
    if not normalized.strip():
        return "must not be only spaces"
    # Normalising can shorten a password (a decomposed accent becomes one character).
    if len(normalized) < MIN_LENGTH:
        return f"is too short (minimum is {MIN_LENGTH} characters)"
    folded = normalized.strip().casefold()
    # The email's local part too: whoever tries to log in as someone knows their email,
    # and its local part is the first guess after the address itself.
    local_part = email.rpartition("@")[0]
    if folded in {name.casefold() for name in (email, local_part, username) if name}:
        return "must not be your email or username"
    if folded in COMMON_PASSWORDS:
        return "is too common (it is in lists of leaked passwords)"
    return None
