"""Every setting of ``flowlstm-sensor``, defined once (fail2ban's shape).

Each ``Setting`` holds its name (the YAML key in ``sensor.yaml`` when it can be
set there), type, default, range, help text, command-line flag, the commands
that take the flag, and whether a running sensor can change it on SIGHUP.
From this one table derive:

- the defaults of the stage dataclasses (``FlowConfig``, ``PipelineConfig``,
  ``LiveConfig``, ``AlertConfig``);
- validation, for values from the configuration file and from the command
  line alike, with one message shape: ``KEY is VALUE; set it to WHAT``;
- the argparse options of each subcommand (``add_arguments``);
- the shipped, documented ``etc/flowlstm/sensor.yaml`` (``render_yaml``; a test
  fails when the two disagree) and the restart-only list used on reload.

This module imports no stage, so every stage can import it.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .signatures import DEFAULT_SIGNATURES

_UNSET: Any = object()


@dataclass(frozen=True)
class Setting:
    """One option: where it is set, what it may be, what it means."""

    name: str  # the YAML key ("capture.snaplen"); for command-line-only options, the dest
    kind: type  # int, float, str, bool, or list (a list of strings: nargs="+")
    default: Any
    help: str
    flag: str | None = None  # command-line flag; None: configuration file only
    file: bool = True  # settable in sensor.yaml
    live: bool = True  # a running sensor applies a new value on SIGHUP (else: restart needed)
    commands: tuple[str, ...] = ("run",)  # subcommands that take the flag
    lo: float | None = None
    hi: float | None = None
    hi_open: bool = False  # the range excludes hi
    choices: tuple[str, ...] = ()
    nullable: bool = False  # null in YAML / absent on the command line means "not set"
    invert: bool = False  # a boolean whose flag turns it off (--no-promisc)
    expect_text: str = ""  # what a valid value looks like, when the derived text is not enough
    metavar: str | None = None
    group: str = ""  # --help section
    required: tuple[str, ...] = ()  # commands where the flag must be given
    shipped: Any = _UNSET  # the value the shipped sensor.yaml carries, where it differs from the default
    doc: str = ""  # comment above the key in sensor.yaml (default: help)

    @property
    def expect(self) -> str:
        if self.expect_text:
            return self.expect_text
        if self.kind is bool:
            return "true or false"
        if self.choices:
            return " or ".join(self.choices)
        if self.kind in (int, float) and self.lo is not None and self.hi is not None:
            what = "an integer" if self.kind is int else "a number"
            return f"{what} from {_num(self.lo)} to {_num(self.hi)}"
        return "a string"

    def check(self, value: Any) -> Any:
        """``value`` converted to this setting's type; ``SettingError`` when it is not valid."""
        if value is None and self.nullable:
            return None
        kind = self.kind
        ok: bool
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            try:
                number = float(value) if ok else math.nan
            except OverflowError:  # an integer beyond float's range
                number = math.nan
            ok = ok and math.isfinite(number)
            value = number if ok else value
        elif kind is list:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        else:
            ok = isinstance(value, str)
        if ok and self.choices:
            ok = value in self.choices
        if ok and self.lo is not None:
            ok = value >= self.lo
        if ok and self.hi is not None:
            ok = value < self.hi if self.hi_open else value <= self.hi
        if not ok:
            raise SettingError(f"{self.name} is {_show(value)}; set it to {self.expect}")
        return value


class SettingError(ValueError):
    """A value a setting cannot take; the message names the setting and the fix."""


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _show(value: Any) -> str:
    if isinstance(value, int) and value.bit_length() > 200:  # repr() of one above 4,300 digits raises
        return f"an integer of {int(value.bit_length() * math.log10(2)) + 1} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."  # a huge value must not flood the log


_FEATURE_COMMANDS = ("run", "inspect", "features", "calibrate")

TABLE: tuple[Setting, ...] = (
    Setting(
        "sensor-name",
        str,
        "",
        "sensor name written as EVE 'host' (default: none)",
        "--host",
        live=True,
        metavar="NAME",
        doc='Written as "host" in every EVE event (empty: no host field).',
        expect_text="a string (written as EVE 'host')",
    ),
    # -- inputs -------------------------------------------------------------------------------------------
    Setting(
        "config",
        str,
        "",
        "YAML configuration (see sensor.yaml(5)); command-line options override it",
        "--config",
        file=False,
        live=False,
        metavar="FILE",
        commands=("run", "calibrate"),
    ),
    Setting(
        "pcap",
        list,
        [],
        "capture files, read in order, then exit",
        "--pcap",
        file=False,
        live=False,
        commands=_FEATURE_COMMANDS,
        metavar="FILE",
        required=("inspect", "features", "calibrate"),
    ),
    Setting(
        "check",
        bool,
        False,
        "check the configuration and the model bundle, then exit (0: good, 78: "
        "not); systemctl reload runs this first, so a bad file fails the reload",
        "--check",
        file=False,
        live=False,
    ),
    Setting(
        "realtime",
        bool,
        False,
        "with --pcap: feed packets at their recorded pace",
        "--realtime",
        file=False,
        live=False,
    ),
    Setting(
        "capture.interface",
        str,
        "",
        "capture live from IFACE until SIGTERM",
        "--interface",
        live=False,
        metavar="IFACE",
        shipped="eth0",
        expect_text="an interface name such as eth1",
        doc="Interface to capture from (libpcap). Headers only: the sensor needs no payload.",
    ),
    Setting(
        "capture.backend",
        str,
        "libpcap",
        "capture with libpcap (fast, default) or tshark via pyshark (remote capture; ~10k pps; packets later "
        "than 10 s are dropped and counted)",
        "--backend",
        live=False,
        choices=("libpcap", "pyshark"),
        group="live capture",
        doc="libpcap (fast) or pyshark (tshark/dumpcap: remote capture, ~10k packets/s,\n"
        "packets more than 10 s late are dropped and counted).",
    ),
    Setting(
        "capture.bpf",
        str,
        "",
        "BPF capture filter, e.g. 'not port 22'",
        "--bpf",
        live=False,
        metavar="FILTER",
        group="live capture",
        expect_text="a BPF filter string such as 'not port 22'",
        doc='BPF filter, as for tcpdump; e.g. "not port 22" to leave your own SSH out.',
    ),
    Setting(
        "capture.snaplen",
        int,
        128,
        "bytes captured per packet; headers only (default %(default)s)",
        "--snaplen",
        live=False,
        lo=64,
        hi=262144,
        metavar="BYTES",
        group="live capture",
        doc="Bytes captured per packet: Ethernet + VLAN + IPv6 + extension headers + TCP.",
    ),
    Setting(
        "capture.promiscuous",
        bool,
        True,
        "do not put the interface in promiscuous mode",
        "--no-promisc",
        live=False,
        invert=True,
        group="live capture",
        doc="Put the interface in promiscuous mode (see every frame on the wire).",
    ),
    Setting(
        "capture.buffer-mb",
        int,
        64,
        "kernel capture buffer in MiB (default %(default)s)",
        "--buffer-mb",
        live=False,
        lo=1,
        hi=4096,
        metavar="MIB",
        group="live capture",
        expect_text="an integer from 1 to 4096 (MiB)",
        doc="Kernel capture buffer in MiB; raise it if stats show kernel drops.",
    ),
    # -- model --------------------------------------------------------------------------------------------
    Setting(
        "model.path",
        str,
        "",
        "model bundle (default: the bundled default model)",
        "--model",
        metavar="DIR",
        commands=("run", "calibrate"),
        expect_text="the directory of a model bundle (empty: the bundled default)",
        doc="Model bundle directory (model.tflite + metadata.json); empty = the bundled default.",
    ),
    Setting(
        "model.threshold",
        float,
        None,
        "alert score threshold in [0, 1); 0 alerts on every window, for testing a pipeline (default: the bundle's)",
        "--threshold",
        lo=0,
        hi=1,
        hi_open=True,
        nullable=True,
        metavar="P",
        expect_text="a number in [0, 1) or null",
        doc="Alert when a window scores at or above this; null = the bundle's own threshold.",
    ),
    Setting(
        "model.scoring-threads",
        int,
        1,
        "threads that score windows beside the feature path: 1 overlaps them on two cores, "
        "2 also scores the model's heads in parallel, 0 scores on the capture thread (default %(default)s)",
        "--scoring-threads",
        lo=0,
        hi=2,
        live=False,
        metavar="N",
        expect_text="0, 1 or 2",
        doc="Score windows (model, thresholding, outputs) on a thread of their own, beside the\n"
        "feature path: 1 uses a second core, 0 does everything on one thread, 2 scores a\n"
        "bundle's second head (the normal-behaviour model) on one more thread beside the\n"
        "first.  The alerts are the same bytes whatever the number.",
    ),
    # -- feature path -------------------------------------------------------------------------------------
    Setting(
        "features.idle-timeout",
        float,
        120.0,
        "end a flow after SEC seconds without packets (default %(default)s)",
        "--idle-timeout",
        live=False,
        commands=_FEATURE_COMMANDS,
        lo=1,
        hi=86400,
        metavar="SEC",
        group="feature path",
        expect_text="seconds, from 1 to 86400",
        doc="A flow ends after this many seconds without packets.",
    ),
    Setting(
        "features.active-timeout",
        float,
        1800.0,
        "split flows longer than SEC seconds (default %(default)s)",
        "--active-timeout",
        live=False,
        commands=_FEATURE_COMMANDS,
        lo=1,
        hi=604800,
        metavar="SEC",
        group="feature path",
        expect_text="seconds, from 1 to 604800",
        doc="Flows longer than this are split (applied at second boundaries).",
    ),
    Setting(
        "features.max-flows",
        int,
        1_000_000,
        "track at most N flows; the longest idle are evicted first (default %(default)s)",
        "--max-flows",
        live=False,
        commands=_FEATURE_COMMANDS,
        lo=1,
        hi=100_000_000,
        metavar="N",
        group="feature path",
        doc="At most this many flows are tracked; the longest idle are evicted first.",
    ),
    Setting(
        "features.memory-mb",
        int,
        192,
        "working memory of the feature path in MiB; with --max-flows it "
        "sets how many flows one second can score (default %(default)s)",
        "--memory-mb",
        live=False,
        commands=_FEATURE_COMMANDS,
        lo=32,
        hi=1 << 20,
        metavar="MIB",
        group="feature path",
        expect_text="an integer from 32 to 1048576 (MiB)",
        doc="Working memory of the feature path, MiB: the flow table (~121 bytes a flow) and one\n"
        "second's flows on their way to windows (~3 KiB each).  Flows beyond it are shed:\n"
        "not tracked, counted (flow.memcap in stats), still in the second's context.",
    ),
    Setting(
        "features.slack",
        float,
        0.5,
        "count packets reordered by up to SEC seconds (default %(default)s)",
        "--slack",
        live=False,
        commands=_FEATURE_COMMANDS,
        lo=0,
        hi=60,
        metavar="SEC",
        group="feature path",
        expect_text="seconds, from 0 to 60",
        doc="Packets reordered by up to this many seconds still count in their second.",
    ),
    # -- outputs ------------------------------------------------------------------------------------------
    Setting(
        "outputs.eve.filename",
        str,
        "",
        "EVE-JSON file to append alerts to ('-' for standard output), or "
        "unix_dgram:PATH / unix_stream:PATH for a socket as in Suricata; required unless the configuration "
        "names outputs.eve.filename",
        "--eve",
        metavar="FILE",
        shipped="/var/log/flowlstm/eve.json",
        expect_text="a file path",
        doc="EVE-JSON alerts, appended whole lines at a time; reopened on SIGHUP (logrotate).\n"
        "'-' is standard output; unix_dgram:PATH and unix_stream:PATH write to a socket.",
    ),
    Setting(
        "outputs.zeek-notice.filename",
        str,
        "",
        "also append the alerts to FILE as a Zeek notice log",
        "--zeek-notice",
        metavar="FILE",
        expect_text="a file path, or empty for none",
        doc="Also write the alerts as a Zeek notice log (Zeek's own TSV header); empty: none.",
    ),
    Setting(
        "progress",
        bool,
        True,
        "no progress bar on stderr",
        "--no-progress",
        file=False,
        invert=True,
        commands=_FEATURE_COMMANDS,
    ),
    # -- thresholding -------------------------------------------------------------------------------------
    Setting(
        "thresholding.limit",
        int,
        1,
        "alerts per tracked key (scanner or victim) per --period (default %(default)s)",
        "--limit",
        lo=1,
        hi=1_000_000,
        metavar="N",
        expect_text="an integer from 1",
        doc='Like Suricata\'s threshold.config "limit": per period, this many alerts per\n'
        "scanner (scans) or per victim (floods, reflections, other anomalies).",
    ),
    Setting(
        "thresholding.period",
        int,
        60,
        "thresholding period in seconds (default %(default)s)",
        "--period",
        lo=1,
        hi=86400,
        metavar="SEC",
        expect_text="seconds, from 1 to 86400",
    ),
    Setting(
        "thresholding.corroborate",
        int,
        60,
        "a lone anomalous flow alerts only if its destination was anomalous in packets of an "
        "earlier second within SEC seconds; 0 alerts at once (default %(default)s)",
        "--corroborate",
        lo=0,
        hi=86400,
        metavar="SEC",
        expect_text="seconds, from 0 to 86400",
        doc="A lone anomalous flow (the only flow of its alert in its second) alerts only if its\n"
        "destination was anomalous in packets of an earlier second, within this many seconds,\n"
        "than the newest packets the lone flow's window shows (one flow that looks like one\n"
        "member of a flood for one second is no evidence, nor is the next window seeing the same\n"
        "packets again); 0 alerts at once.  Alerts of several flows are never held back.",
    ),
    Setting(
        "thresholding.max-per-second",
        int,
        100,
        "hard cap on alerts per second (default %(default)s)",
        "--max-alerts-per-second",
        lo=1,
        hi=1_000_000,
        metavar="N",
        expect_text="an integer from 1",
        doc="Never more than this many alerts in one second, whatever the rules say.",
    ),
    # -- service ------------------------------------------------------------------------------------------
    Setting(
        "metrics.port",
        int,
        0,
        "serve Prometheus metrics on 127.0.0.1:PORT/metrics (default: off)",
        "--metrics-port",
        live=False,
        lo=0,
        hi=65535,
        metavar="PORT",
        group="live capture",
        expect_text="a TCP port for the Prometheus endpoint on 127.0.0.1, or 0 for none",
        doc="Prometheus text endpoint on 127.0.0.1:port/metrics; 0 turns it off.",
    ),
    Setting(
        "announce",
        bool,
        True,
        "do not announce the sensor over zeroconf (_flowlstm._tcp.local.)",
        "--no-announce",
        live=False,
        invert=True,
        group="live capture",
        expect_text="true or false (zeroconf _flowlstm._tcp.local.)",
        doc="Announce the sensor over zeroconf as _flowlstm._tcp.local. (TXT: version,\n"
        "interface, model sha256, metrics port); false keeps it silent.",
    ),
    # -- inspect / features -------------------------------------------------------------------------------
    Setting("json", bool, False, "one JSON object per second (see above)", "--json", file=False, commands=("inspect",)),
    Setting(
        "top",
        int,
        1,
        "aggregates shown per second in the table (default %(default)s)",
        "--top",
        file=False,
        commands=("inspect",),
        lo=1,
        hi=10_000,
        metavar="N",
    ),
    Setting(
        "out",
        str,
        "",
        "where to write (replaced atomically): the Parquet file of windows (features) or the "
        "calibrated model bundle's directory (calibrate)",
        "--out",
        file=False,
        commands=("features", "calibrate"),
        metavar="OUT",
        required=("features", "calibrate"),
    ),
    Setting(
        "false-alert-budget",
        float,
        1.0,
        "false alerts allowed per 10,000 flows of the calibration captures, shared by the "
        "model's heads (default %(default)s)",
        "--false-alert-budget",
        file=False,
        commands=("calibrate",),
        lo=0.001,
        hi=10_000,
        metavar="N",
    ),
    Setting(
        "alerts.per",
        str,
        "aggregate",
        "one alert per anomalous aggregate (victim, scanner, host pair; default) or per flow",
        "--alert-per",
        choices=("aggregate", "flow"),
        metavar="WHAT",
        doc="aggregate: the anomalous flows of a second become one alert per victim (floods,\n"
        "reflections), scanner (scans) or host pair (other anomalies), named by its heaviest\n"
        "flow, with the members' flow/packet/byte counts and prefixes in alert.metadata.\n"
        "flow: one alert per anomalous flow.",
    ),
)

_SIG_FIELDS = (
    ("sid", int, "an integer from 1 to 2147483647, unique among the kinds", 1, 2**31 - 1),
    ("msg", str, "a non-empty string", None, None),
    ("category", str, "a string (Suricata's classification, e.g. 'Attempted Denial of Service')", None, None),
    ("severity", int, "an integer from 1 (highest) to 255", 1, 255),
)
TABLE += tuple(
    Setting(
        f"alerts.signatures.{kind}.{f}", ty, getattr(sig, f), f"{f} of {kind} alerts", expect_text=exp, lo=lo, hi=hi
    )
    for kind, sig in DEFAULT_SIGNATURES.items()
    for f, ty, exp, lo, hi in _SIG_FIELDS
)

BY_NAME: dict[str, Setting] = {s.name: s for s in TABLE}
FILE_KEYS: tuple[str, ...] = tuple(s.name for s in TABLE if s.file)

# Comments written above a section in sensor.yaml.
SECTIONS = {
    "alerts.signatures": "What each kind of alert is called, as in a Suricata rule: sid (signature_id,\n"
    "unique; gid is 9330), msg (signature), category (classtype) and severity\n"
    "(1 = highest).  Thresholding tracks alerts by these sids.",
}


def default(name: str) -> Any:
    """The default of setting ``name`` (stage dataclasses take theirs from here)."""
    return BY_NAME[name].default


def defaults() -> dict[str, Any]:
    """Every setting at its default."""
    return {s.name: list(s.default) if s.kind is list else s.default for s in TABLE}


def validate(values: dict[str, Any]) -> dict[str, Any]:
    """Check every value and the rules between them; ``SettingError`` names the first bad one."""
    out = {name: BY_NAME[name].check(v) for name, v in values.items()}
    for name in out:
        if name.endswith(".msg") and name.startswith("alerts.signatures.") and not out[name].strip():
            raise SettingError(f"{name} is {out[name]!r}; set it to {BY_NAME[name].expect}")
    sids: dict[int, str] = {}
    for kind in DEFAULT_SIGNATURES:
        sid = out.get(f"alerts.signatures.{kind}.sid")
        if sid in sids:
            raise SettingError(
                f"alerts.signatures.{kind}.sid is {sid}, the same as "
                f"alerts.signatures.{sids[sid]}.sid; give each kind its own id"
            )
        if sid is not None:
            sids[sid] = kind
    idle, active = out.get("features.idle-timeout"), out.get("features.active-timeout")
    if idle is not None and active is not None and active < idle:
        raise SettingError(
            f"features.active-timeout ({active}) is shorter than features.idle-timeout ({idle}); "
            "make it at least as long"
        )
    return out


def restart_only(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names of the settings that differ between ``old`` and ``new`` but need a restart to apply."""
    return [s.name for s in TABLE if not s.live and old.get(s.name) != new.get(s.name)]


# -- command line -------------------------------------------------------------------------------------------


def _flag_type(s: Setting) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value: Any = s.kind(text) if s.kind in (int, float) else text
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"'{text}' is not {'an integer' if s.kind is int else 'a number'}; set it to {s.expect}"
            ) from None
        try:
            return s.check(value)
        except SettingError:
            raise argparse.ArgumentTypeError(f"{_show(value)}; set it to {s.expect}") from None

    parse.__name__ = s.kind.__name__  # argparse names the type in its own messages
    return parse


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the flags of ``command``'s settings to ``parser``, grouped as in --help.

    Flags default to *absent* (argparse.SUPPRESS): ``given(args)`` returns only
    what the command line set, so it can be laid over the configuration file.
    """
    groups: dict[str, Any] = {}
    for s in TABLE:
        if s.flag is None or command not in s.commands:
            continue
        target = parser if not s.group else groups.setdefault(s.group, parser.add_argument_group(s.group))
        kw: dict[str, Any] = {"dest": s.name, "default": argparse.SUPPRESS, "help": s.help}
        if s.kind is bool:
            kw.update(action="store_const", const=not s.invert)
        else:
            kw.update(type=_flag_type(s) if s.kind is not list else str, metavar=s.metavar)
            if s.kind is list:
                kw["nargs"] = "+"
            if s.choices:
                kw["choices"] = s.choices
                kw.pop("metavar")
            if command in s.required:
                kw["required"] = True
        if "%(default)" in s.help:
            kw["help"] = s.help.replace("%(default)s", _num(s.default) if s.kind in (int, float) else str(s.default))
        target.add_argument(s.flag, **kw)


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line set (flags not given are absent)."""
    return {k: v for k, v in vars(args).items() if k in BY_NAME}


# -- the shipped configuration file ------------------------------------------------------------------------


def _yaml_value(v: Any) -> str:
    import json

    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, int):
        return str(v)
    return json.dumps(v) if (v == "" or any(c in v for c in ":#'\"{}[],&*!|>%@`") or v.strip() != v) else v


def render_yaml() -> str:
    """The documented ``sensor.yaml``: every file setting at its shipped value, with its comment."""
    lines = [
        "%YAML 1.1",
        "---",
        "# flowlstm-sensor configuration: sensor.yaml(5).",
        "#   flowlstm-sensor run --config /etc/flowlstm/sensor.yaml",
        "# Every value is checked at start; a wrong one stops the sensor with a message",
        "# naming the key and what it should be.  Command-line options override this file.",
        "# SIGHUP (systemctl reload) re-reads it: settings marked [restart] need a restart",
        "# (a change to them is logged and ignored); the rest change live.  A file that",
        "# fails validation is refused and the running settings stay.",
        "# Generated from sensor/settings.py (scripts/gen-config.py); edit the table there.",
    ]
    open_path: list[str] = []
    for s in TABLE:
        if not s.file:
            continue
        *path, leaf = s.name.split(".")
        common = 0
        while common < min(len(path), len(open_path)) and path[common] == open_path[common]:
            common += 1
        for depth in range(common, len(path)):
            section = ".".join(path[: depth + 1])
            if depth == 0:
                lines.append("")
            for c in SECTIONS.get(section, "").splitlines():
                lines.append("  " * depth + "# " + c)
            lines.append("  " * depth + path[depth] + ":")
        open_path = path
        indent = "  " * len(path)
        if not s.name.startswith("alerts.signatures."):
            if not path:
                lines.append("")
            doc = s.doc or (s.help.split(" (default")[0][0].upper() + s.help.split(" (default")[0][1:] + ".")
            for i, c in enumerate(doc.splitlines()):
                tag = " [restart]" if not s.live and i == len(doc.splitlines()) - 1 else ""
                lines.append(f"{indent}# {c}{tag}")
        value = s.default if s.shipped is _UNSET else s.shipped
        lines.append(f"{indent}{leaf}: {_yaml_value(value)}")
    return "\n".join(lines) + "\n"
