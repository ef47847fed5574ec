"""The Zeek package (zeek/flowlstm): its scripts parse, the record it reads matches the log the sensor writes.

Zeek itself is not run here: zeekscript (Zeek's own formatter, on its tree-sitter
grammar) parses every script, and the record type handed to the Input framework is
read from that parse tree and checked against the ``#fields``/``#types`` header and
the rows of a notice log the sensor writes from a fixture capture.
"""

from __future__ import annotations

import configparser
import io
import subprocess
import sys
from pathlib import Path

import pytest
from zeekscript import Script

from sensor import __version__
from sensor.signatures import DEFAULT_SIGNATURES

from ..conftest import ATTACKS

PKG = Path(__file__).resolve().parents[2] / "zeek" / "flowlstm"
SCRIPTS = sorted(PKG.rglob("*.zeek"))
MAIN = PKG / "scripts" / "main.zeek"

# Script types that Zeek's log writer names differently in #types.
ENUMS = {"transport_proto", "Notice::Type", "Notice::Action"}
# (declared, written): any column reads into a string, whatever its log type.
READS_AS = {("string", "enum")}


def parsed(source: Path | bytes) -> Script:
    script = Script(io.BytesIO(source) if isinstance(source, bytes) else source)
    script.parse()
    return script


def errors(script: Script) -> list[str]:
    """Every ERROR or missing node of the parse tree, as line:col and text."""
    out = []
    for node, _ in script.traverse(include_cst=True):
        if node.type == "ERROR" or node.is_missing:
            text = script.get_content(node.start_byte, node.end_byte).decode(errors="replace")
            out.append(f"{node.start_point[0] + 1}:{node.start_point[1]} {node.type} {text[:60]!r}")
    return out


def text(script: Script, node) -> str:
    return script.get_content(node.start_byte, node.end_byte).decode()


def child(node, kind: str):
    return next(c for c in node.children if c.type == kind)


def record_types(script: Script) -> dict[str, list[tuple[str, str, bool]]]:
    """Each ``type NAME: record {...}`` of the script: [(field, type, optional)]."""
    out = {}
    for node, _ in script.traverse():
        if node.type != "type_decl":
            continue
        body = [c for c in node.children if c.type == "type"][-1]  # the first is the keyword
        if not body.children or body.children[0].type != "record":
            continue
        fields = []
        for spec in (c for c in body.children if c.type == "type_spec"):
            attrs = [c for c in spec.children if c.type == "attr_list"]
            optional = bool(attrs) and "&optional" in text(script, attrs[0])
            fields.append((text(script, child(spec, "id")), text(script, child(spec, "type")), optional))
        out[text(script, child(node, "id"))] = fields
    return out


def columns(records: dict[str, list[tuple[str, str, bool]]], name: str, prefix: str = ""):
    """The log columns a record reads, as the Input framework unrolls it: nested records as a.b."""
    for field, kind, optional in records[name]:
        if kind in records:
            yield from columns(records, kind, f"{prefix}{field}.")
        else:
            yield f"{prefix}{field}", kind, optional


def log_type(kind: str) -> str:
    if kind.startswith("set[") and kind.endswith("]"):
        return f"set[{log_type(kind[4:-1])}]"
    return "enum" if kind in ENUMS else kind


@pytest.fixture(scope="module")
def notice_log(tmp_path_factory) -> tuple[list[str], list[str], list[list[str]]]:
    """(#fields, #types, rows) of a notice log the sensor CLI writes; TCP and ICMP flows, every head."""
    tmp = tmp_path_factory.mktemp("zeeklog")
    log = tmp / "notice.log"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "sensor.cli",
            "run",
            "--no-progress",
            "--threshold",
            "0",
            "--limit",
            "5",
            "--alert-per",
            "flow",  # one row per flow: the ICMP ones too, whose ports are unset
            "--corroborate",
            "0",  # every one at once: a lone flow alerts
            "--pcap",
            str(ATTACKS / "amp.TCP.reflection.SYNACK.pcap"),
            "--eve",
            str(tmp / "eve.json"),
            "--zeek-notice",
            str(log),
        ],
        check=True,
        capture_output=True,
    )
    lines = log.read_text().splitlines()
    head = {ln.split("\t", 1)[0]: ln.split("\t")[1:] for ln in lines if ln.startswith("#")}
    rows = [ln.split("\t") for ln in lines if not ln.startswith("#")]
    proto = head["#fields"].index("proto")
    assert {"tcp", "icmp"} <= {r[proto] for r in rows}
    return head["#fields"], head["#types"], rows


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(PKG)))
def test_every_script_parses(path):
    script = parsed(path)
    assert not errors(script) and not script.has_error(), errors(script) or script.get_error()


def test_the_parse_check_catches_a_broken_script():
    broken = parsed(b"event zeek_init()\n\t{\n\tlocal x = ;\n\tprint x\n")
    assert errors(broken)


def test_input_record_reads_the_log_the_sensor_writes(notice_log):
    fields, types, rows = notice_log
    script = parsed(MAIN)
    src = MAIN.read_text()
    assert "Input::add_event" in src and "$fields=Alert" in src and "$mode=Input::STREAM" in src
    written = dict(zip(fields, types, strict=True))
    read = list(columns(record_types(script), "Alert"))
    assert read
    for col, kind, optional in read:
        assert col in written, f"main.zeek reads column {col}; the sensor writes {fields}"
        got = written[col]
        assert log_type(kind) == got or (kind, got) in READS_AS, f"{col}: main.zeek reads {kind}, the log says {got}"
        if not optional:
            # The reader drops a line where a field the record requires is unset.
            at = fields.index(col)
            assert all(r[at] != "-" for r in rows), f"{col} is unset in a row but not &optional in main.zeek"
    assert {c for c, _, _ in read} >= {"ts", "uid", "id.orig_h", "id.resp_h", "note", "msg", "sub", "src", "dst"}


def test_notice_types_are_the_notes_the_sensor_writes(notice_log):
    fields, _, rows = notice_log
    script = parsed(MAIN)
    module = next(text(script, child(n, "id")) for n, _ in script.traverse() if n.type == "module_decl")
    declared = set()
    for node, _ in script.traverse():
        if node.type == "redef_enum_decl" and "Notice::Type" in text(script, node):
            body = child(node, "enum_body")
            declared |= {f"{module}::{text(script, e)}" for e in body.children if e.type == "enum_body_elem"}
    assert declared == {f"FlowLSTM::{kind.capitalize()}" for kind in DEFAULT_SIGNATURES}
    at = fields.index("note")
    assert {r[at] for r in rows} <= declared


def test_zkg_meta():
    meta = configparser.ConfigParser(interpolation=None)
    meta.read_string((PKG / "zkg.meta").read_text())
    pkg = meta["package"]
    for key in ("description", "tags", "script_dir", "version", "depends"):
        assert pkg.get(key, "").strip(), f"zkg.meta has no {key}"
    assert (PKG / pkg["script_dir"] / "__load__.zeek").is_file()
    assert pkg["version"] == __version__, "zkg.meta's version follows the sensor's (sensor/__init__.py)"
    depends = [d.split()[0] for d in pkg["depends"].strip().splitlines()]
    assert depends == ["zeek"]
    assert (PKG / "README.md").is_file()
