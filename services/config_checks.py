"""Range checks of the serving configs (ShardConfig, CoordinatorConfig, ServeOptions), named by their flags,
so a bad flag is refused before any process starts rather than found by a shard mid-run."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(ValueError):
    """A config value out of its range; the message names each flag that is off and what it must be."""


def refuse_out_of_range(checks: Iterable[tuple[str, object, bool, str]]) -> None:
    """checks: (flag, value, whether it is in range, what it must be)."""
    bad = [f"{flag} must be {rule}, got {value}" for flag, value, ok, rule in checks if not ok]
    if bad:
        raise ConfigError("; ".join(bad))


def port_check(flag: str, port: int | None) -> tuple[str, object, bool, str]:
    """A listening port: 0 for any free port; None where the endpoint is off."""
    return flag, port, port is None or 0 <= port <= 65535, "a port number in [0, 65535] (0: any free port)"
