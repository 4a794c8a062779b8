"""Which passwords an account may have, and the one form a password is hashed in.

The common passwords are zxcvbn's list: the 30,000 most frequent in leaked password
dumps, lower-cased, shipped with the library (nothing is fetched at run time).
"""

from __future__ import annotations

import unicodedata

from zxcvbn.frequency_lists import FREQUENCY_LISTS

MIN_LENGTH = 8
# A set for O(1) lookups, built once per process. Importing zxcvbn builds its ranked
# word lists too: about 35 ms and 17 MB per process, measured, for a maintained list.
COMMON_PASSWORDS = frozenset(FREQUENCY_LISTS["passwords"])


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
