"""The command's settings: the command line over the ``--config`` TOML file over the defaults.

Values from both sources are checked with the settings table's kinds (prefork/settings.py),
so a wrong type or a value out of range is a :class:`UsageError` naming the option (the flag,
or the file and the key), never a traceback later.
"""

from __future__ import annotations

from typing import Any

from prefork.app import AppError, check_spec
from prefork.settings import SETTINGS, by_toml_key


class UsageError(Exception):
    """Bad command line or configuration: exit status 2."""


def read_config(path: str) -> dict[str, Any]:
    """The settings a TOML file sets: ``{setting name: checked value}``.

    Raises:
        UsageError: the file cannot be read or parsed, or a key is unknown, given twice, or
            has a value of the wrong type or out of range (the message names file and key).
    """
    import tomllib  # only with --config: workers fork from this process and inherit its modules

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise UsageError(f"--config: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config: {path}: {exc}") from None
    out: dict[str, Any] = {}
    for key, value in data.items():
        setting = by_toml_key(key)
        if setting is None:
            raise UsageError(f"--config: {path}: unknown option {key!r}")
        if setting.name in out:
            raise UsageError(f"--config: {path}: {key!r} is set twice (dashes or underscores)")
        out[setting.name] = _load(setting.name, value, f"--config: {path}: {key}")
    return out


def load_args(args: dict[str, Any]) -> dict[str, Any]:
    """The command line's values (argparse's, by setting name) checked like the file's.

    Raises:
        UsageError: a value out of range; the message names the flag (``--workers``).
    """
    return {name: _load(name, value, SETTINGS[name].flag) for name, value in args.items()}


def _load(name: str, value: Any, label: str) -> Any:
    try:
        return SETTINGS[name].load(value, label)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def merge(args: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Every setting of the command: the command line wins over the file, which wins over the
    defaults. ``--certfile`` implies ``--tls on`` unless ``tls`` is set."""
    merged = {name: s.for_command for name, s in SETTINGS.items() if s.toml_key or s.flags}
    merged.update(config)
    merged.update(args)
    if merged["certfile"] and "tls" not in args and "tls" not in config:
        merged["tls"] = True
    return merged


def settings(args: dict[str, Any], config_path: str | None) -> dict[str, Any]:
    """:func:`merge` with the file at ``config_path`` read now; APP is required.

    Raises:
        UsageError: see :func:`read_config`; no APP, or one not of the form module:callable;
            an implementation (``--loop``, ``--http``) that is not installed.
    """
    merged = merge(args, read_config(config_path) if config_path else {})
    for name in ("loop", "http"):  # a default from the environment is checked too
        merged[name] = _load(name, merged[name], SETTINGS[name].flag)
    if not merged["app"]:
        raise UsageError("APP is required: module:callable or path/to/file.py:callable")
    try:
        check_spec(merged["app"])
    except AppError as exc:
        raise UsageError(str(exc)) from None
    return merged
