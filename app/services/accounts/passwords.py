"""Password policy: long enough, not a common password, not a trivial pattern.

A small embedded list instead of a download: the passwords attackers try first, plus the
product's own words. Checked case-insensitively, also with trailing digits and symbols
stripped ("Password123!" is "password").
"""

from __future__ import annotations

import re

from app.errors import InvalidInput

MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 hashes anything, but a megabyte "password" is a DoS, not a secret

COMMON = frozenset(
    """
    password passw0rd p@ssword p@ssw0rd passwort motdepasse contraseña wachtwoord
    123456 1234567 12345678 123456789 1234567890 0123456789 9876543210 987654321
    qwerty qwertyuiop qwertz asdfgh asdfghjkl zxcvbnm azerty 1q2w3e4r 1q2w3e4r5t
    1qaz2wsx qazwsx qazwsxedc iloveyou letmein welcome welcome1 admin administrator
    root toor changeme changeit default secret secret1 trustno1 monkey dragon master
    football baseball soccer hockey basketball superman batman princess sunshine shadow
    michael jennifer jessica charlie freedom whatever starwars pokemon computer internet
    abc123 abcdef abcdefg abcdefgh abcdefghij access login hello hello123 test tester
    testing guest user username qwerty123 password1 password12 password123 medsynth
    radiology radiologist hospital doctor nurse patient reviewer reader stylegan
    correcthorsebatterystaple letmein123 iloveyou1 summer winter spring autumn
    """.split()
)
_SEQUENCES = (
    "abcdefghijklmnopqrstuvwxyz",
    "01234567890",
    "qwertyuiopasdfghjklzxcvbnm",
    "qwertzuiopasdfghjklyxcvbnm",
    "azertyuiopqsdfghjklmwxcvbn",
)
_TRAILING = re.compile(r"[\d\W_]+$")


def _is_sequence(text: str) -> bool:
    """Runs along the alphabet, the digits or a keyboard row, forwards or backwards."""
    for seq in _SEQUENCES:
        for s in (seq, seq[::-1]):
            if text in s or text in s * 2:
                return True
    return False


def weakness(password: str, username: str = "") -> str | None:
    """Why the password is refused, or None when it is acceptable."""
    if len(password) < MIN_PASSWORD:
        return f"password must have at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"password must have at most {MAX_PASSWORD} characters"
    low = password.lower()
    base = _TRAILING.sub("", low)
    if low in COMMON or base in COMMON or re.sub(r"[\W_]", "", low) in COMMON:
        return "this password is too common; choose one that is not on lists of leaked passwords"
    if len(set(low)) < 4:
        return "password must use more than a few different characters"
    if _is_sequence(low):
        return "password must not be a run of letters, digits or keyboard keys"
    if re.fullmatch(r"(.{1,4})\1+", low):
        return "password must not be a short pattern repeated"
    if username and len(username) >= 3 and username.lower() in low:
        return "password must not contain the username"
    return None


def check(password: str, username: str = "") -> None:
    if (why := weakness(password, username)) is not None:
        raise InvalidInput(why)
