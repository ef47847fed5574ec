"""The sensor's configuration: ``sensor.yaml`` and the command line, merged and validated.

Values come from three layers — the settings table's defaults, the YAML file,
the command line — and are validated once, by the table (``sensor/settings.py``).
A bad one is a ``ConfigError`` naming the file, the key, what was found and how
to fix it, before anything opens.  Unknown keys are errors too (a typo must not
silently fall back to a default).

The file is read defensively, since a sensor re-reads it on SIGHUP and a bad
file must never take the running sensor down: regular files only (not a FIFO
or a device), at most ``MAX_BYTES``, UTF-8, no YAML aliases (the billion-laughs
expansion), nesting at most ``MAX_DEPTH``, no duplicate keys.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import settings
from .capture.live import LiveConfig
from .errors import ConfigError, UsageError
from .eve import AlertConfig
from .flows import FlowConfig
from .pipeline import PipelineConfig
from .signatures import DEFAULT_SIGNATURES, Signature
from .threshold import Thresholder, default_rules

MAX_BYTES = 1 << 20  # the shipped file is ~4 KiB
MAX_DEPTH = 16


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases, deep nesting and duplicate keys."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]  # unannotated in types-PyYAML
            raise yaml.MarkedYAMLError(
                problem="aliases (*name) are not allowed in a sensor configuration", problem_mark=mark
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]  # unannotated in types-PyYAML
                raise yaml.MarkedYAMLError(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str) and key in seen:
                raise yaml.MarkedYAMLError(problem=f"duplicate key '{key}'", problem_mark=key_node.start_mark)
            seen.add(key if isinstance(key, str) else id(key_node))
        return super().construct_mapping(node, deep)


def read_small_file(path: str | os.PathLike[str], limit: int, what: str) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; ``ConfigError`` otherwise.

    Opened non-blocking and checked on the open descriptor, so a FIFO or device
    swapped in between check and read can neither hang nor flood the reader.
    """
    p = str(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such {what}") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{p}: not a regular file; give the path of a {what}")
        if st.st_size > limit:
            raise ConfigError(f"{p}: {st.st_size} bytes, larger than a {what} can be ({limit} bytes)")
        data = os.read(fd, limit + 1)
        if len(data) > limit:
            raise ConfigError(f"{p}: larger than a {what} can be ({limit} bytes)")
        return data
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


def _flatten(tree: Any, where: str, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        raise ConfigError(
            f"{where}: {prefix.rstrip('.') or 'the file'}: expected a mapping of keys, found {type(tree).__name__}"
        )
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if not isinstance(k, str):
            raise ConfigError(
                f"{where}: key {settings._show(k)} under '{prefix.rstrip('.') or 'the top'}' is not a name"
            )
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, where, key + "."))
        else:
            out[key] = v
    return out


def _key_hint(key: str) -> str:
    """A short way on from an unknown key: the key it probably meant, or the keys of its section."""
    import difflib

    near = [k for k in settings.FILE_KEYS if k.split(".")[-1] == key.split(".")[-1]]
    near = near or difflib.get_close_matches(key, settings.FILE_KEYS, n=1, cutoff=0.75)
    if near:
        return f"; did you mean '{near[0]}'?"
    section = key.split(".")[0] + "."
    keys = [k for k in settings.FILE_KEYS if k.startswith(section)]
    if keys and len(keys) <= 8:
        return f"; known keys there: {', '.join(keys)}"
    return "; sensor.yaml(5) lists the keys (etc/flowlstm/sensor.yaml documents each)"


def read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings a YAML file sets, by key, each validated; ``ConfigError`` on anything wrong."""
    p = Path(path)
    raw = read_small_file(p, MAX_BYTES, "configuration file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte offset {exc.start})") from None
    try:
        tree = yaml.load(text, Loader=_StrictLoader) or {}  # noqa: S506 - _StrictLoader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        why = " ".join(str(getattr(exc, "problem", None) or exc).split())  # PyYAML's reader errors span lines
        raise ConfigError(f"{p}{where}: not valid YAML ({why})") from None
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply to be a sensor configuration") from None
    except Exception as exc:  # noqa: BLE001 - PyYAML's constructors raise plain errors, e.g. "!!float lo"
        why = " ".join(str(exc).split())[:200]
        raise ConfigError(f"{p}: not valid YAML (a value does not fit its tag: {type(exc).__name__}: {why})") from None
    found = _flatten(tree, str(p))
    for key in found:
        if key not in settings.FILE_KEYS:
            hint = _key_hint(key)
            raise ConfigError(f"{p}: unknown key {settings._show(key)}{hint}")
    try:
        return settings.validate(found)
    except settings.SettingError as exc:
        raise ConfigError(f"{p}: {exc}") from None


def resolve(config_path: str | None, given: dict[str, Any]) -> dict[str, Any]:
    """Every setting's value: defaults, then the file (if any), then ``given`` (the command line)."""
    values = settings.defaults()
    if config_path:
        values.update({k: v for k, v in read_file(config_path).items()})
    values.update(given)
    try:
        values = settings.validate(values)
        problem = _flow_config(values).budget_problem()
        if problem:
            raise settings.SettingError(problem)
        return values
    except settings.SettingError as exc:  # flags that contradict each other or the file (e.g. the timeouts)
        if config_path:
            raise ConfigError(f"{config_path}{' with the command line' if given else ''}: {exc}") from None
        raise UsageError(str(exc)) from None


def load_config(path: str | Path | None) -> dict[str, Any]:
    """Defaults, overlaid with the file at ``path`` (if any), every value validated."""
    return resolve(str(path) if path else None, {})


def signatures(values: dict[str, Any]) -> dict[str, Signature]:
    """The alert signatures, per anomaly kind, from loaded configuration values."""
    return {
        kind: Signature(*(values[f"alerts.signatures.{kind}.{f}"] for f in ("sid", "msg", "category", "severity")))
        for kind in DEFAULT_SIGNATURES
    }


@dataclass(frozen=True)
class SensorConfig:
    """What ``flowlstm-sensor run`` runs: the typed configuration of every stage."""

    values: dict[str, Any]  # the validated settings it was built from (compared on reload)
    pipeline: PipelineConfig
    alerts: AlertConfig
    capture: LiveConfig | None  # live capture; None for file runs
    pcaps: tuple[str, ...]
    eve_path: str
    notice_path: str
    model_path: str
    threshold: float | None

    @property
    def period(self) -> int:
        return int(self.values["thresholding.period"])

    def thresholder(self) -> Thresholder:
        """A fresh thresholder with this configuration's rules."""
        v = self.values
        sids = {kind: sig.sid for kind, sig in self.alerts.signatures.items()}
        return Thresholder(
            default_rules(v["thresholding.limit"], v["thresholding.period"], sids),
            max_per_second=v["thresholding.max-per-second"],
            corroborate=v["thresholding.corroborate"],
        )


def _flow_config(values: dict[str, Any]) -> FlowConfig:
    return FlowConfig(
        values["features.idle-timeout"],
        values["features.active-timeout"],
        values["features.max-flows"],
        values["features.memory-mb"],
    )


def pipeline_config(values: dict[str, Any], protocols: bool = False) -> PipelineConfig:
    """The feature path's configuration from settings values (``protocols``: aggregate protocol breakdowns)."""
    from .aggregate import AggregateConfig

    flows = _flow_config(values)
    problem = flows.budget_problem()
    if problem:
        raise ConfigError(problem)
    return PipelineConfig(flows=flows, aggregate=AggregateConfig(protocols=protocols), slack=values["features.slack"])


def sensor_config(values: dict[str, Any]) -> SensorConfig:
    """The typed configuration of a run from validated settings values."""
    from .model import DEFAULT_BUNDLE

    pcaps = tuple(values["pcap"])
    iface = "" if pcaps else values["capture.interface"]  # --pcap on the command line beats a configured interface
    if not (pcaps or iface):
        raise UsageError("name an input: --pcap FILE... or --interface IFACE (or capture.interface in --config)")
    if not values["outputs.eve.filename"]:
        raise UsageError("name an output: --eve FILE (or outputs.eve.filename in --config)")
    capture = None
    if iface:
        capture = LiveConfig(
            iface,
            values["capture.bpf"],
            values["capture.snaplen"],
            values["capture.promiscuous"],
            values["capture.buffer-mb"],
        )
    return SensorConfig(
        values=values,
        pipeline=pipeline_config(values),
        alerts=AlertConfig(
            host=values["sensor-name"], in_iface=iface, signatures=signatures(values), per=values["alerts.per"]
        ),
        capture=capture,
        pcaps=pcaps,
        eve_path=values["outputs.eve.filename"],
        notice_path=values["outputs.zeek-notice.filename"],
        model_path=values["model.path"] or str(DEFAULT_BUNDLE),
        threshold=values["model.threshold"],
    )
