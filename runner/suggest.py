"""\"Did you mean ...?\": the nearest known names to a name that matches nothing, for every error message.

One rule everywhere (difflib's ratio, at most ``n`` names above ``cutoff``) and one wording, so a misspelt
config key, stage, run, input, layer or op type is answered the same way.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def close_matches(word: str, choices: Iterable[str], *, n: int = 1, cutoff: float = 0.6) -> list[str]:
    """The known names nearest to ``word``, best first (one that differs only in case first of all: FP16)."""
    options = list(choices)
    same = [c for c in options if c.lower() == word.lower() and c != word]
    return [*same, *(m for m in difflib.get_close_matches(word, options, n=n, cutoff=cutoff) if m not in same)][:n]


def did_you_mean(matches: Iterable[str], *, prefix: str = "; ", suffix: str = "") -> str:
    """``"; did you mean 'a' or 'b'?"`` for the given names (duplicates dropped), or "" when there are none."""
    names = list(dict.fromkeys(matches))
    if not names:
        return ""
    return f"{prefix}did you mean {' or '.join(repr(x) for x in names)}?{suffix}"


def suggest(
    word: str, choices: Iterable[str], *, n: int = 1, cutoff: float = 0.6, prefix: str = "; ", suffix: str = ""
) -> str:
    """:func:`did_you_mean` of :func:`close_matches`: the hint to append to "no such NAME" messages."""
    return did_you_mean(close_matches(word, choices, n=n, cutoff=cutoff), prefix=prefix, suffix=suffix)
