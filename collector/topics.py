"""AMQP topic matching: ``*`` is one dot-separated word, ``#`` zero or more words."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1024)
def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split("."))


def topic_matches(binding: str, key: str) -> bool:
    """True when routing ``key`` matches the topic ``binding``."""
    return _match(_split(binding), _split(key))


def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    if head == "*" or head == words[0]:
        return _match(rest, words[1:])
    return False
