#!/usr/bin/env python3
"""Write the manual pages in docs/man from the sources of --help and sensor.yaml.

flowlstm-sensor(8) comes from the sensor's argparse parser (sensor/cli, whose
options are the settings table), flowlstm-train(1) from the trainer's parser
(trainer/cli.py: importing it loads no Spark or TensorFlow, so this runs in the
sensor venv), and sensor.yaml(5) from the settings table (sensor/settings.py).
The pages are generated, never edited by hand: tests/sensor/test_manpages.py fails
when they differ from this script's output.  Run after changing any of those:
    .venv/sensor/bin/python scripts/gen-man.py
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sensor import __version__, settings  # noqa: E402
from sensor.cli import build_parser as sensor_parser  # noqa: E402
from sensor.cli import run as sensor_run  # noqa: E402
from sensor.cli.common import EXIT_CODES as SENSOR_EXIT_CODES  # noqa: E402
from trainer.cli import EXIT_CODES as TRAIN_EXIT_CODES  # noqa: E402
from trainer.cli import build_parser as train_parser  # noqa: E402

OUT = ROOT / "docs" / "man"
SOURCE = f"flowlstm {__version__}"


def esc(text: str) -> str:
    """``text`` as roff body text: backslashes, hyphens and non-ASCII escaped, control lines disarmed."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)
    # A line starting with . or ' would be read as a request.
    return "\n".join("\\&" + ln if ln[:1] in (".", "'") else ln for ln in text.split("\n"))


def bold(text: str) -> str:
    return f"\\fB{esc(text)}\\fR"


def italic(text: str) -> str:
    return f"\\fI{esc(text)}\\fR"


def prose(text: str) -> list[str]:
    """argparse-style description text as roff: flowing paragraphs, indented lines kept as they are."""
    out: list[str] = []
    block: list[str] = []
    verbatim = False

    def flush() -> None:
        if not block:
            return
        if verbatim:
            out.extend([".RS 4", ".nf", *(esc(ln) for ln in _dedent(block)), ".fi", ".RE"])
        else:
            out.extend([".PP", *(esc(ln.strip()) for ln in block)])
        block.clear()

    for line in text.rstrip().split("\n"):
        if not line.strip():
            flush()
            continue
        indented = line.startswith((" ", "\t"))
        if indented != verbatim:
            flush()
            verbatim = indented
        block.append(line)
    flush()
    return out


def _dedent(lines: list[str]) -> list[str]:
    cut = min(len(ln) - len(ln.lstrip()) for ln in lines if ln.strip())
    return [ln[cut:] for ln in lines]


def split_examples(text: str) -> tuple[str, list[str]]:
    """(description without its ``examples:`` block, the example command lines)."""
    head, sep, tail = text.partition("\nexamples:\n")
    if not sep:
        return text, []
    lines = []
    for ln in tail.split("\n"):
        if ln.strip() and not ln.startswith((" ", "\t")):
            break  # the next section (exit status, ...)
        lines.append(ln)
    return head, [ln for ln in _dedent([x for x in lines if x.strip()])]


def codes(text: str) -> list[tuple[str, str]]:
    """The ``  CODE  meaning`` rows of an exit-status block."""
    return re.findall(r"^\s+(\d+)\s+(.+)$", text, re.M)


def _expand(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    # argparse's own expansion of %(default)s and friends, as --help shows them.
    return parser._get_formatter()._expand_help(action) if action.help else ""


def _shows_default(action: argparse.Action) -> bool:
    d = action.default
    return (
        not isinstance(action, (argparse._StoreTrueAction, argparse._StoreConstAction, argparse._AppendAction))
        and d not in (None, argparse.SUPPRESS, "", [], False)
        and "default" not in (action.help or "")  # the help says it already
    )


def option_item(parser: argparse.ArgumentParser, action: argparse.Action) -> list[str]:
    """One option as a .TP item: its flags and value, then its help."""
    flags = ", ".join(bold(f) for f in action.option_strings)
    if action.nargs != 0:
        if action.choices:
            value = "{" + ",".join(str(c) for c in action.choices) + "}"
        else:
            value = str(action.metavar or action.dest.upper())
        value = italic(value) + (" ..." if action.nargs in ("+", "*") else "")
        flags += " " + value
    text = _expand(parser, action)
    if _shows_default(action):
        text += f"{' ' if text else ''}(default: {action.default})"
    if getattr(action, "required", False):
        text += f"{' ' if text else ''}(required)"
    return [".TP", flags, esc(text) if text else "\\&"]


def options(parser: argparse.ArgumentParser, skip: Iterable[str] = ("-h",)) -> list[str]:
    """Every option of ``parser``, by --help group, each group under its own heading."""
    out: list[str] = []
    for group in parser._action_groups:
        acts = [
            a
            for a in group._group_actions
            if a.option_strings and not set(a.option_strings) & set(skip) and a.help != argparse.SUPPRESS
        ]
        if not acts:
            continue
        if group.title not in ("options", "optional arguments"):
            out += [".PP", f"\\fI{esc(group.title or '')}:\\fR"]
        for a in acts:
            out += option_item(parser, a)
    return out


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """(name, parser, one-line help) of each subcommand, in --help order."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help or "" for c in sub._choices_actions}
    return [(name, p, helps.get(name, "")) for name, p in sub.choices.items()]


def synopsis_of(prog: str, p: argparse.ArgumentParser, name: str) -> str:
    """``prog NAME`` and its required options, the rest as [OPTIONS]."""
    req = []
    for a in p._actions:
        if a.option_strings and a.required:
            value = a.metavar or a.dest.upper()
            req.append(f"{bold(a.option_strings[0])} {italic(str(value))}")
    return " ".join([bold(prog), bold(name), *req, "[\\fIOPTIONS\\fR]"])


def header(name: str, section: int, title: str, summary: str) -> list[str]:
    return [
        f'.\\" Generated by scripts/gen-man.py from {"sensor/settings.py" if section == 5 else "the --help sources"}; '
        "do not edit.",
        f'.TH {name.upper()} {section} "" "{SOURCE}" "{title}"',
        # Option names and paths must not be hyphenated or stretched.
        ".nh",
        ".ad l",
        ".SH NAME",
        f"{esc(name)} \\- {esc(summary)}",
    ]


def exit_status(text: str) -> list[str]:
    out = [".SH EXIT STATUS"]
    for code, meaning in codes(text):
        out += [".TP", bold(code), esc(meaning)]
    return out


def see_also(*pages: str) -> list[str]:
    return [".SH SEE ALSO", ",\n".join(f".BR {p.split('(')[0]} ({p.split('(')[1]}" for p in pages)]


def sensor_page() -> str:
    """flowlstm-sensor(8)."""
    parser = sensor_parser()
    cmds = subcommands(parser)
    intro = parser.description.split("\n\n")[0] if parser.description else ""
    lines = header("flowlstm-sensor", 8, "System Administration", "flow-based LSTM network anomaly sensor")
    lines += [".SH SYNOPSIS", f"{bold('flowlstm-sensor')} [{bold('-v')}] {italic('COMMAND')} [{italic('OPTIONS')}]"]
    for name, p, _ in cmds:
        lines += [".br", synopsis_of("flowlstm-sensor", p, name)]
    lines += [".br", f"{bold('flowlstm-sensor')} {bold('--version')}"]
    lines += [".SH DESCRIPTION", *prose(intro)]
    lines += [".PP", esc("Every option of run can also be set in the configuration file; see"), ".BR sensor.yaml (5)."]
    lines += [".SH OPTIONS", *options(parser)]
    section, examples = commands_section(cmds)
    lines += section
    lines += [
        ".SH FILES",
        ".TP",
        bold("/etc/flowlstm/sensor.yaml"),
        esc("The configuration the systemd unit passes with --config; see"),
        ".BR sensor.yaml (5).",
        ".TP",
        bold("/etc/default/flowlstm-sensor"),
        esc("FLOWLSTM_OPTS: further command-line options for flowlstm-sensor@IFACE.service."),
        ".TP",
        bold("/lib/systemd/system/flowlstm-sensor@.service"),
        esc("One sensor per interface: systemctl enable --now flowlstm-sensor@eth1."),
        ".TP",
        bold("/var/log/flowlstm/eve.json"),
        esc("EVE-JSON alerts and stats events, as the shipped configuration writes them (rotated daily)."),
    ]
    sig_body = sensor_run.SIGNALS.partition("\n")[2]
    lines += [".SH SIGNALS", *prose("During a live capture (--interface), flowlstm-sensor run handles:")]
    for m in re.finditer(r"^  (SIG\w+)\s+(.+?)(?=^  SIG|\Z)", sig_body, re.M | re.S):
        lines += [".TP", bold(m.group(1)), esc(" ".join(m.group(2).split()))]
    lines += exit_status(SENSOR_EXIT_CODES)
    lines += [".SH EXAMPLES", ".nf", *(esc(e) for e in examples), ".fi"]
    lines += see_also("sensor.yaml(5)", "flowlstm-train(1)", "suricata(1)", "zeek(8)", "systemctl(1)")
    return "\n".join(lines) + "\n"


def commands_section(cmds: list[tuple[str, argparse.ArgumentParser, str]]) -> tuple[list[str], list[str]]:
    """The COMMANDS section (each subcommand's prose and options) and the examples their help holds."""
    lines = [".SH COMMANDS"]
    examples: list[str] = []
    for name, p, summary in cmds:
        body, ex = split_examples(p.description or "")
        examples += ex
        lines += [f".SS {bold(name)} \\- {esc(summary)}", *prose(body)]
        lines += [".PP", f"\\fIOptions of {name}:\\fR", *options(p)]
    return lines, examples


def train_page() -> str:
    """flowlstm-train(1)."""
    parser = train_parser()
    cmds = subcommands(parser)
    desc = parser.description or ""
    intro = desc.split("\nworkflow:")[0]
    spark = desc.split("\nSpark:")[1].split("\n\n")[0] if "\nSpark:" in desc else ""
    lines = header("flowlstm-train", 1, "User Commands", "retrain flowlstm's model offline, on one box or Spark")
    lines += [".SH SYNOPSIS", f"{bold('flowlstm-train')} [{bold('-v')}] {italic('COMMAND')} [{italic('OPTIONS')}]"]
    for name, p, _ in cmds:
        lines += [".br", synopsis_of("flowlstm-train", p, name)]
    lines += [".br", f"{bold('flowlstm-train')} {bold('--version')}"]
    lines += [".SH DESCRIPTION", *prose(intro)]
    if spark:
        lines += prose("Spark:" + spark)
    lines += [".SH OPTIONS", *options(parser)]
    section, examples = commands_section(cmds)
    lines += section
    lines += [
        ".SH FILES",
        ".TP",
        italic("RUN") + bold("/bundle"),
        esc("The model bundle a train run exports (model.tflite, metadata.json); ")
        + esc("flowlstm-sensor run --model RUN/bundle loads it."),
        ".TP",
        italic("RUN") + bold("/report.md"),
        esc("The run's report (with report.json and PNG plots)."),
    ]
    lines += [
        ".SH SIGNALS",
        ".TP",
        bold("SIGINT"),
        esc("Stop; a Spark job in progress is abandoned (exit status 130)."),
    ]
    lines += exit_status(TRAIN_EXIT_CODES + "  130 interrupted\n")
    lines += [".SH EXAMPLES", ".nf", *(esc(e) for e in examples), ".fi"]
    lines += see_also("flowlstm-sensor(8)", "sensor.yaml(5)", "spark-submit(1)")
    return "\n".join(lines) + "\n"


def _yaml_value(s: settings.Setting) -> str:
    value = s.default if s.shipped is settings._UNSET else s.shipped
    return settings._yaml_value(value)


def yaml_page() -> str:
    """sensor.yaml(5)."""
    lines = header("sensor.yaml", 5, "File Formats", "flowlstm-sensor configuration file")
    lines += [".SH SYNOPSIS", bold("/etc/flowlstm/sensor.yaml")]
    lines += [
        ".SH DESCRIPTION",
        *prose(
            "The configuration of flowlstm-sensor(8), read with --config FILE: a YAML mapping whose "
            "keys are the settings below, written nested (capture: interface: eth1) as the shipped file "
            "writes them.  Every value is checked at start; a wrong one stops the sensor (exit status 78) "
            "with a message naming the key and what it should be, in the form KEY is VALUE; set it to WHAT.  "
            "Keys left out take their defaults.  Command-line options override the file.\n\n"
            "On SIGHUP (systemctl reload) the sensor re-reads the file, all or nothing: a file that fails "
            "validation is refused and the running settings stay.  Settings marked Needs a restart need one; "
            "a change to them is logged and ignored.  The rest change live."
        ),
        ".SH SETTINGS",
    ]
    section = ""
    for s in settings.TABLE:
        if not s.file:
            continue
        top = s.name.split(".")[0] if "." in s.name else ""
        if s.name.startswith("alerts.signatures."):
            top = "alerts.signatures"
        if top != section:
            section = top
            lines.append(f".SS {esc(top or 'top level')}")
            if top in settings.SECTIONS:
                lines += prose(" ".join(settings.SECTIONS[top].split("\n")))
        doc = s.doc or s.help.split(" (default")[0]
        doc = " ".join(doc.split("\n"))
        if doc and not doc.endswith("."):
            doc = doc[0].upper() + doc[1:] + "."
        facts = [f"Value: {s.expect}.", f"Default: {_yaml_value(s)}."]
        if s.flag:
            facts.append(f"Command line: {s.flag}.")
        if not s.live:
            facts.append("Needs a restart.")
        lines += [".TP", bold(s.name), esc(" ".join([doc, *facts]))]
    lines += [
        ".SH FILES",
        ".TP",
        bold("/etc/flowlstm/sensor.yaml"),
        esc("The shipped, documented file: every setting at its shipped value (a conffile of the Debian package)."),
        ".SH EXAMPLES",
        ".nf",
        *(
            esc(x)
            for x in (
                "capture:",
                "  interface: eth1",
                '  bpf: "not port 22"',
                "model:",
                "  threshold: 0.9",
                "outputs:",
                "  eve:",
                "    filename: /var/log/flowlstm/eve.json",
                "  zeek-notice:",
                "    filename: /var/log/flowlstm/notice.log",
                "",
                "flowlstm-sensor run --config /etc/flowlstm/sensor.yaml --check",
            )
        ),
        ".fi",
    ]
    lines += see_also("flowlstm-sensor(8)", "flowlstm-train(1)")
    return "\n".join(lines) + "\n"


def render() -> dict[str, str]:
    """Every page, by file name."""
    return {"flowlstm-sensor.8": sensor_page(), "flowlstm-train.1": train_page(), "sensor.yaml.5": yaml_page()}


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, page in render().items():
        (OUT / name).write_text(page)
