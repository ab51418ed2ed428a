"""Argument validation shared by the model constructors (ValueError naming the argument)."""

from __future__ import annotations

from collections.abc import Sequence


def check_int(name: str, value: object, *, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum``; raise ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def check_float(name: str, value: object, *, minimum: float | None = None,
                maximum: float | None = None) -> float:
    """Return ``float(value)`` if it is a finite number in range; raise ``ValueError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_widths(name: str, value: object, *, min_length: int = 1) -> tuple[int, ...]:
    """Return a tuple of positive ints (channel widths per level)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a sequence of positive integers, got {value!r}")
    if len(value) < min_length:
        raise ValueError(f"{name} needs at least {min_length} entries, got {list(value)}")
    for i, item in enumerate(value):
        check_int(f"{name}[{i}]", item)
    return tuple(int(v) for v in value)


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return str(value)
