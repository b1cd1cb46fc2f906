"""Password policy: long enough, and hard to guess by a maintained strength estimator.

zxcvbn (Dropbox's estimator, the PyPI package) models what crackers try first: leaked-password
and word lists, names, keyboard walks (`zaq12wsxcde3`), repeats (`abc123abc123`), l33t,
dates and sequences. It is given the user name and the product's own words as context, so
`adminadmin12` for `admin` scores as the name repeated. We ask for its score 3 ("safely
unguessable: moderate protection from an offline slow-hash attack", about 10^8 guesses) or
better. Its dictionaries ship inside the package: nothing is downloaded.
"""

from __future__ import annotations

import threading

from zxcvbn import zxcvbn

from app.errors import InvalidInput

MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 hashes anything, but a megabyte "password" is a DoS, not a secret
MIN_SCORE = 3  # zxcvbn's 0-4 scale
ESTIMATED_CHARS = 72  # zxcvbn's own input limit; a longer passphrase is judged by its start
CONTEXT = ("medsynth", "radiology", "radiologist", "reviewer", "reader", "stylegan", "liver")
# zxcvbn keeps the user inputs in a module-level dictionary during a call: one call at a time.
_ESTIMATOR = threading.Lock()


def weakness(password: str, username: str = "") -> str | None:
    """Why the password is refused, or None when it is acceptable."""
    if len(password) < MIN_PASSWORD:
        return f"password must have at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"password must have at most {MAX_PASSWORD} characters"
    if username and len(username) >= 3 and username.lower() in password.lower():
        return "password must not contain the username"
    with _ESTIMATOR:
        result = zxcvbn(password[:ESTIMATED_CHARS], user_inputs=[username, *CONTEXT])
    if result["score"] >= MIN_SCORE:
        return None
    feedback = result.get("feedback") or {}
    hint = " ".join(x for x in [feedback.get("warning"), *feedback.get("suggestions", [])] if x)
    return (
        "this password is too easy to guess (it resembles common passwords, keyboard patterns "
        "or repeats); choose a longer phrase of unrelated words" + (f". {hint}" if hint else "")
    )


def check(password: str, username: str = "") -> None:
    if (why := weakness(password, username)) is not None:
        raise InvalidInput(why)
