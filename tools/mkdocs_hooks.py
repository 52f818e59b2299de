"""MkDocs hooks: pages generated at build time, so they cannot drift from the code.

* ``cli.md``: the ``--help`` of ``convprop`` and of every subcommand, rendered from
  ``convprop.cli.build_parser()`` (the parser the command itself uses);
* ``benchmarks.md``: the repository's ``BENCHMARKS.md`` when it exists, else a note that the
  benchmarks are not yet measured;
* ``<!-- explain: ARGS -->`` anywhere: the text output of ``convprop explain ARGS``, or of one
  of its sections with ``<!-- explain: ARGS :: SECTION TITLE -->``.

Each page holds a marker comment that the hook replaces.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLI_MARKER = "<!-- generated: cli-reference -->"
BENCHMARKS_MARKER = "<!-- generated: benchmarks -->"
HELP_WIDTH = "100"


def _subcommands(
    parser: argparse.ArgumentParser, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """``parser`` and every subcommand's parser below it, depth first, in definition order."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                yield from _subcommands(subparser, (*path, name))


def cli_reference() -> str:
    """Markdown: one section per command with its help text, as the terminal shows it."""
    from convprop.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH  # argparse wraps help text to the terminal's width
    try:
        sections = []
        for path, parser in _subcommands(build_parser(), ("convprop",)):
            command = " ".join(path)
            help_text = parser.format_help().rstrip()
            sections.append(f"## `{command}`\n\n```text\n$ {command} --help\n{help_text}\n```\n")
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(sections)


def benchmarks() -> str:
    """The benchmark table of ``BENCHMARKS.md``, its own top-level heading dropped."""
    path = ROOT / "BENCHMARKS.md"
    if not path.is_file():
        return "Not yet measured: `BENCHMARKS.md` does not exist yet (run `python -m benchmarks`)."
    text = path.read_text(encoding="utf-8")
    # The page has its own title; demote the file's headings one level below it.
    text = re.sub(r"^# .*\n", "", text, count=1)
    return re.sub(r"^(#+) ", r"#\1 ", text, flags=re.MULTILINE)


EXPLAIN_MARKER = re.compile(r"<!-- explain: (?P<args>[^:>]+?)(?: :: (?P<section>[^>]+?))? -->")


def explain_output(args: str, section: str | None = None) -> str:
    """``convprop explain ARGS`` as the terminal prints it, in a text block."""
    from convprop.cli import main

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            status = main(["explain", *shlex.split(args)])
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    if status:
        raise RuntimeError(f"convprop explain {args} exited with status {status}")
    text = output.getvalue()
    if section is not None:
        text = _section(text, section, args)
    return f"```text\n$ convprop explain {args}\n{text.rstrip()}\n```"


def _section(text: str, title: str, args: str) -> str:
    """The part of ``text`` from the heading ``title`` (underlined) to the next heading."""
    lines = text.splitlines()

    def is_heading(i: int) -> bool:
        return (
            i + 1 < len(lines)
            and bool(lines[i].strip())
            and set(lines[i + 1]) <= {"-", "="}
            and len(lines[i + 1]) == len(lines[i])
        )

    starts = [i for i, line in enumerate(lines) if line == title and is_heading(i)]
    if not starts:
        raise ValueError(f"convprop explain {args}: no section {title!r}")
    end = next((i for i in range(starts[0] + 2, len(lines)) if is_heading(i)), len(lines))
    return "\n".join(lines[starts[0] : end])


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if BENCHMARKS_MARKER in markdown:
        markdown = markdown.replace(BENCHMARKS_MARKER, benchmarks())
    return EXPLAIN_MARKER.sub(
        lambda match: explain_output(match["args"].strip(), match["section"]), markdown
    )


def on_config(config: Any) -> Any:
    # BENCHMARKS.md lives outside docs/: rebuild when it changes under `mkdocs serve`.
    config.watch.append(str(ROOT / "src"))
    return config
