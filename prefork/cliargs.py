"""The ``prefork`` command's parser, made from the settings table (prefork/settings.py).

Every setting with a flag becomes an option, in the group of its section; argparse converts
the text (``type``/``choices`` from the setting's kind) and leaves unset options ``None``, so
that the config file and the defaults can fill them (prefork/config.py).
"""

from __future__ import annotations

import argparse
from typing import Any

import prefork
from prefork.settings import SECTIONS, Setting

DESCRIPTION = (
    "Run APP (an async def onstream(server, stream)) in a pre-fork master with worker processes."
)
EPILOG = (
    "Every option can also be set in the --config TOML file, under its long name (dashes or "
    "underscores); the command line wins. Reference: docs/settings.md."
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``prefork [options] APP`` (``prefork ctl`` has its own: prefork/ctl.py)."""
    parser = argparse.ArgumentParser(
        prog="prefork", description=DESCRIPTION, epilog=EPILOG, argument_default=None
    )
    parser.add_argument("--version", action="version", version=f"prefork {prefork.__version__}")
    for section in SECTIONS:
        group: Any = parser.add_argument_group(section.group) if section.group else parser
        for setting in section.settings:
            if setting.flags or setting.positional:
                add_option(group, setting)
    return parser


def add_option(group: Any, setting: Setting) -> None:
    """Add ``setting`` to an argparse parser or group; its value lands in ``setting.name``."""
    text = setting.help
    if not setting.positional and (setting.for_command is not None or setting.shown):
        text += f" (default: {setting.show_default()})"
    text = text.replace("%", "%%")  # argparse formats help with %
    if setting.positional:
        group.add_argument(setting.name, nargs="?", metavar=setting.metavar, help=text)
        return
    options = {"dest": setting.name, "help": text, **setting.kind.argparse()}
    if setting.metavar and "choices" not in options and options.get("action") != "store_true":
        options["metavar"] = setting.metavar
    group.add_argument(*setting.flags, **options)


def given(namespace: argparse.Namespace) -> dict[str, Any]:
    """The options the command line set: ``{setting name: value}``."""
    return {name: value for name, value in vars(namespace).items() if value is not None}
