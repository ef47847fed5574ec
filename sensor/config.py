"""The sensor's YAML configuration, validated at start.

Every value is checked against its spec; a bad one is a ``ConfigError`` that
names the key, what was found and how to fix it — before anything opens.
Unknown keys are errors too (a typo must not silently fall back to a default).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import ConfigError
from .signatures import DEFAULT_SIGNATURES, Signature


@dataclass(frozen=True)
class Spec:
    default: Any
    check: Callable[[Any], bool]
    expect: str  # what a valid value looks like, for the message


def _int(lo, hi):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _num(lo, hi, lo_open=False):
    def ok(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        return (lo < v if lo_open else lo <= v) and v <= hi
    return ok


_str = lambda v: isinstance(v, str)  # noqa: E731
_bool = lambda v: isinstance(v, bool)  # noqa: E731

SPECS: dict[str, Spec] = {
    "sensor-name": Spec("", _str, "a string (written as EVE 'host')"),
    "capture.interface": Spec("", _str, "an interface name such as eth1"),
    "capture.bpf": Spec("", _str, "a BPF filter string such as 'not port 22'"),
    "capture.backend": Spec("libpcap", lambda v: v in ("libpcap", "pyshark"), "libpcap or pyshark"),
    "capture.snaplen": Spec(128, _int(64, 262144), "an integer from 64 to 262144"),
    "capture.promiscuous": Spec(True, _bool, "true or false"),
    "capture.buffer-mb": Spec(64, _int(1, 4096), "an integer from 1 to 4096 (MiB)"),
    "model.path": Spec("", _str, "the directory of a model bundle (empty: the bundled default)"),
    "model.threshold": Spec(None, lambda v: v is None or _num(0, 1)(v) and v < 1, "a number in [0, 1) or null"),
    "features.idle-timeout": Spec(120.0, _num(1, 86400), "seconds, from 1 to 86400"),
    "features.active-timeout": Spec(1800.0, _num(1, 604800), "seconds, from 1 to 604800"),
    "features.max-flows": Spec(1_000_000, _int(1, 100_000_000), "an integer from 1 to 100000000"),
    "features.slack": Spec(0.5, _num(0, 60), "seconds, from 0 to 60"),
    "outputs.eve.filename": Spec("/var/log/flowlstm/eve.json", _str, "a file path"),
    "thresholding.limit": Spec(1, _int(1, 1_000_000), "an integer from 1"),
    "thresholding.period": Spec(60, _int(1, 86400), "seconds, from 1 to 86400"),
    "thresholding.max-per-second": Spec(100, _int(1, 1_000_000), "an integer from 1"),
    "announce": Spec(True, _bool, "true or false (zeroconf _flowlstm._tcp.local.)"),
    "metrics.port": Spec(0, _int(0, 65535), "a TCP port for the Prometheus endpoint on 127.0.0.1, or 0 for none"),
}
for _kind, _sig in DEFAULT_SIGNATURES.items():
    _at = f"alerts.signatures.{_kind}."
    SPECS[_at + "sid"] = Spec(_sig.sid, _int(1, 2**31 - 1), "an integer from 1 to 2147483647, unique among the kinds")
    SPECS[_at + "msg"] = Spec(_sig.msg, lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string")
    SPECS[_at + "category"] = Spec(_sig.category, _str, "a string (Suricata's classification, e.g. "
                                                       "'Attempted Denial of Service')")
    SPECS[_at + "severity"] = Spec(_sig.severity, _int(1, 255), "an integer from 1 (highest) to 255")


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{prefix or 'the file'}: expected a mapping of keys, found {type(tree).__name__}")
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_config(path: str | Path | None) -> dict[str, Any]:
    """Defaults, overlaid with the file at ``path`` (if any), every value validated."""
    values = {k: s.default for k, s in SPECS.items()}
    if path is None:
        return values
    p = Path(path)
    try:
        tree = yaml.safe_load(p.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ConfigError(f"{p}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    for key, value in _flatten(tree).items():
        spec = SPECS.get(key)
        if spec is None:
            near = [k for k in SPECS if k.split(".")[-1] == key.split(".")[-1]]
            hint = f"; did you mean '{near[0]}'?" if near else f"; known keys: {', '.join(sorted(SPECS))}"
            raise ConfigError(f"{p}: unknown key '{key}'{hint}")
        if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not spec.check(value):
            raise ConfigError(f"{p}: {key} is {value!r}; set it to {spec.expect}")
        values[key] = value
    sids: dict[int, str] = {}
    for kind in DEFAULT_SIGNATURES:
        sid = values[f"alerts.signatures.{kind}.sid"]
        if sid in sids:
            raise ConfigError(f"{p}: alerts.signatures.{kind}.sid is {sid}, the same as "
                              f"alerts.signatures.{sids[sid]}.sid; give each kind its own id")
        sids[sid] = kind
    if values["features.active-timeout"] < values["features.idle-timeout"]:
        raise ConfigError(f"{p}: features.active-timeout ({values['features.active-timeout']}) is shorter than "
                          f"features.idle-timeout ({values['features.idle-timeout']}); make it at least as long")
    return values


def signatures(values: dict[str, Any]) -> dict[str, Signature]:
    """The alert signatures, per anomaly kind, from loaded configuration values."""
    return {kind: Signature(*(values[f"alerts.signatures.{kind}.{f}"] for f in ("sid", "msg", "category", "severity")))
            for kind in DEFAULT_SIGNATURES}
