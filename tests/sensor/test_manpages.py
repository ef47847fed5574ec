"""The manual pages in docs/man: generated from the --help sources and the settings table, and they render.

scripts/gen-man.py writes them; a page that differs from its output fails here, as
etc/flowlstm/sensor.yaml does against scripts/gen-config.py.  Each page is rendered
with man-db (groff underneath) with every warning on, and must name every option.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from sensor import settings
from sensor.cli import build_parser as sensor_parser
from trainer.cli import build_parser as train_parser

ROOT = Path(__file__).resolve().parents[2]
MAN = ROOT / "docs" / "man"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_man", ROOT / "scripts" / "gen-man.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def flags(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of a parser and its subcommands, --help and -h aside."""
    out = set()
    for a in parser._actions:
        out |= set(a.option_strings)
        if isinstance(a, argparse._SubParsersAction):
            for p in a.choices.values():
                out |= flags(p)
    return out - {"-h", "--help"}


PAGES = {
    "flowlstm-sensor.8": lambda: flags(sensor_parser()),
    "flowlstm-train.1": lambda: flags(train_parser()),
    "sensor.yaml.5": lambda: set(settings.FILE_KEYS),
}


def test_committed_pages_are_the_generators_output():
    pages = generator().render()
    assert set(pages) == set(PAGES) == {p.name for p in MAN.iterdir()}
    for name, text in pages.items():
        assert (MAN / name).read_text() == text, f"run scripts/gen-man.py: docs/man/{name} is stale"


@pytest.mark.skipif(not shutil.which("man"), reason="needs man-db (scripts/setup.sh installs it)")
@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_renders_without_warnings_and_names_every_option(name):
    env = {**os.environ, "MANWIDTH": "100", "LC_ALL": "C.UTF-8", "MAN_KEEP_FORMATTING": ""}
    proc = subprocess.run(
        ["man", "--warnings=all", "--local-file", str(MAN / name)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    text = proc.stdout
    assert len(text.splitlines()) > 40
    section = name.rsplit(".", 1)[1]
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "EXAMPLES", "SEE ALSO"):
        assert f"\n{heading}\n" in text, heading
    if section != "5":
        for heading in ("OPTIONS", "COMMANDS", "SIGNALS", "EXIT STATUS"):
            assert f"\n{heading}\n" in text, heading
        for code in ("64", "65", "73"):
            assert f"\n       {code} " in text
    words = set(text.replace(",", " ").split())
    missing = sorted(f for f in PAGES[name]() if f not in words)
    assert not missing, f"{name} does not name {missing}"


def test_escaping():
    gen = generator()
    assert gen.esc(".start\n'quote\nback\\slash -x") == "\\&.start\n\\&'quote\nback\\eslash \\-x"
    assert gen.esc("a\u2014b") == "a\\[u2014]b"
