"""The option tables and their reference stay in step: every option and method of the server
is documented in docs/server.md with its default, and the CLI exposes every server limit."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from prefork import cli, server
from prefork.options import ListenOptions, ServerOptions

DOC = (Path(__file__).parent.parent / "docs" / "server.md").read_text()


def documented_options() -> dict[str, str]:
    """``name -> the line documenting it`` for every ``  - `name` (...)`` entry."""
    return {m.group(1): m.group(0) for m in re.finditer(r"^  - `(\w+)` \(.*$", DOC, re.M)}


def test_every_option_is_documented_with_its_default():
    docs = documented_options()
    for cls in (ServerOptions, ListenOptions):
        for field in dataclasses.fields(cls):
            assert field.name in docs, f"docs/server.md lacks option {field.name!r}"
            if field.default is not dataclasses.MISSING and field.default is not None:
                default = field.default
                shown = "math.inf" if default == float("inf") else repr(default)
                assert shown in docs[field.name] or str(default) in docs[field.name], (
                    f"docs/server.md gives {field.name!r} a default other than {default!r}"
                )


def test_every_public_method_has_a_section():
    sections = set(re.findall(r"^### `(?:await )?server\.(\w+)", DOC, re.M))
    public = {
        name
        for name in vars(server.Server)
        if not name.startswith("_") and callable(getattr(server.Server, name))
    }
    assert public - sections == set(), f"undocumented methods: {public - sections}"


def test_cli_exposes_every_server_limit():
    help_text = cli.build_parser().format_help()
    for name in (
        "max_concurrent",
        "max_request_line",
        "max_header_count",
        "max_head_size",
        "max_body_size",
        "connection_setup_timeout",
        "intra_stream_timeout",
        "backlog",
        "h2_max_concurrent_streams",
        "h2_initial_window_size",
        "h2_max_frame_size",
        "h2_max_header_list_size",
    ):
        assert "--" + name.replace("_", "-") in help_text
