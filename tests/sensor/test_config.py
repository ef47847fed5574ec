"""Configuration: the shipped file loads; every bad value is named with its fix."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sensor.config import SPECS, load_config
from sensor.errors import ConfigError

from ..conftest import ATTACKS

SHIPPED = Path(__file__).resolve().parents[2] / "etc" / "flowlstm" / "sensor.yaml"


def test_shipped_file_is_valid_and_complete():
    cfg = load_config(SHIPPED)
    assert cfg["capture.interface"] == "eth0" and cfg["features.slack"] == 0.5
    text = SHIPPED.read_text()
    for key in SPECS:  # every key is documented in the shipped file
        assert key.split(".")[-1] + ":" in text, key


@pytest.mark.parametrize(
    "text,message",
    [
        ("capture:\n  snaplen: 20\n", r"capture\.snaplen is 20; set it to an integer from 64 to 262144"),
        ("capture:\n  snaplenn: 128\n", r"unknown key 'capture\.snaplenn'"),
        ("capture:\n  promiscuous: maybe\n", r"capture\.promiscuous is 'maybe'; set it to true or false"),
        ("model:\n  threshold: 1.5\n", r"model\.threshold is 1\.5"),
        ("features:\n  idle-timeout: 600\n  active-timeout: 60\n", r"active-timeout .* make it at least as long"),
        ("capture: [1, 2\n", r"cfg\.yaml:\d+:\d+: not valid YAML"),
        ("slack: 1\n", r"unknown key 'slack'; did you mean 'features\.slack'"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(tmp_path, text, message):
    f = tmp_path / "cfg.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(f)


def test_cli_uses_the_file_and_options_override_it(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    eve = tmp_path / "eve.json"
    cfg.write_text(f"sensor-name: from-config\noutputs:\n  eve:\n    filename: {eve}\nmodel:\n  threshold: 0\n")
    run = [sys.executable, "-m", "sensor.cli", "run", "--config", str(cfg), "--no-progress", "--pcap",
           str(ATTACKS / "amp.TCP.reflection.SYNACK.pcap")]
    done = subprocess.run(run, check=True, capture_output=True, text=True)
    assert '"host":"from-config"' in eve.read_text()
    assert "threshold 0.0000" in done.stderr  # 0 is a value, not "unset"
    subprocess.run([*run, "--host", "from-cli"], check=True, capture_output=True)
    assert '"host":"from-cli"' in eve.read_text().splitlines()[-1]
    cfg.write_text("capture:\n  snaplen: 5\n")
    bad = subprocess.run(run, capture_output=True, text=True)
    assert bad.returncode == 78
    assert bad.stderr.strip() == f"flowlstm-sensor: error: {cfg}: capture.snaplen is 5; set it to an integer from 64 to 262144"


def test_shipped_signatures_are_the_defaults():
    from sensor.config import signatures
    from sensor.signatures import DEFAULT_SIGNATURES

    assert signatures(load_config(SHIPPED)) == DEFAULT_SIGNATURES


def test_signature_ids_must_be_unique(tmp_path):
    f = tmp_path / "cfg.yaml"
    f.write_text("alerts:\n  signatures:\n    scan:\n      sid: 9330001\n")
    with pytest.raises(ConfigError, match=r"alerts\.signatures\.scan\.sid is 9330001, the same as "
                                          r"alerts\.signatures\.flood\.sid; give each kind its own id"):
        load_config(f)


def test_configured_signatures_name_alerts_and_keep_their_thresholding(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    eve = tmp_path / "eve.json"
    cfg.write_text(f"outputs:\n  eve:\n    filename: {eve}\nmodel:\n  threshold: 0\nalerts:\n  signatures:\n"
                   "    scan:\n      sid: 4242\n      msg: local scan rule\n      severity: 4\n")
    subprocess.run([sys.executable, "-m", "sensor.cli", "run", "--config", str(cfg), "--no-progress", "--pcap",
                    str(ATTACKS / "zmap_tcp_5k.pcapng")], check=True, capture_output=True)
    alerts = [json.loads(x)["alert"] for x in eve.read_text().splitlines() if '"event_type":"alert"' in x]
    # One alert for the one scanner: the by-source rule for scans followed the scan's new id
    # (tracked by destination instead, the 5,000 probed hosts would each raise one).
    assert [(a["signature_id"], a["signature"], a["severity"]) for a in alerts] == [(4242, "local scan rule", 4)]
