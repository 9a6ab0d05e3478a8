"""The error every configuration check raises, and the helper its messages share."""

from __future__ import annotations

__all__ = ["ConfigError", "divisors"]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field and the fix."""


def divisors(n: int) -> list[int]:
    """The divisors of ``n``, for messages that suggest valid sizes."""
    return [d for d in range(1, n + 1) if n % d == 0]
