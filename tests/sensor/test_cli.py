"""flowlstm-sensor's command line, checked against tshark and capinfos."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from sensor.capture import read_packets
from sensor.parquet import read_windows
from sensor.pipeline import run_files

from ..conftest import ATTACKS, MAWI_PCAP


def cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "sensor.cli", *map(str, args)], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


def io_stat(path) -> list[tuple[int, int]]:
    out = subprocess.run(
        ["tshark", "-r", str(path), "-q", "-z", "io,stat,1"], capture_output=True, text=True, check=True
    ).stdout
    return [(int(f), int(b)) for f, b in re.findall(r"^\|\s*\S+\s*<>\s*\S+\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|", out, re.M)]


def test_inspect_json_equals_tshark_io_stat(tmp_path):
    """Per-second packets and wire bytes equal tshark's io,stat.

    tshark's intervals start at the first packet; shifting the capture so its
    first packet sits on a whole second makes them the epoch seconds we report.
    """
    first = next(read_packets(MAWI_PCAP))["ts"].min()
    shifted = tmp_path / "aligned.pcap"
    frac = (first % 1_000_000_000) / 1e9
    subprocess.run(["editcap", "-t", f"-{frac:.9f}", str(MAWI_PCAP), str(shifted)], check=True)
    lines = [json.loads(line) for line in cli("inspect", "--json", "--pcap", shifted).stdout.splitlines()]
    ours = [(o["packets"], o["bytes"]) for o in lines]
    ref = io_stat(shifted)
    assert len(ref) == 78 and ours == ref
    assert [o["ts"] for o in lines] == list(range(lines[0]["ts"], lines[0]["ts"] + len(lines)))
    assert {"ts", "packets", "bytes", "flows", "new_flows", "aggregates"} <= set(lines[0])
    agg = lines[0]["aggregates"][0]
    assert {"src", "dst", "bytes", "packets"} <= set(agg)


def test_inspect_table_totals_equal_capinfos():
    out = cli("inspect", "--pcap", MAWI_PCAP).stdout.splitlines()
    assert out[0].startswith("time (UTC)")
    ref = (
        subprocess.run(["capinfos", "-T", "-m", "-c", "-d", str(MAWI_PCAP)], capture_output=True, text=True, check=True)
        .stdout.strip()
        .splitlines()[-1]
        .split(",")
    )
    assert out[-1] == f"79 seconds, {ref[-2]} packets, {ref[-1]} bytes"


def test_features_file_is_the_pipeline_output(tmp_path):
    out = tmp_path / "w.parquet"
    cli("features", "--pcap", ATTACKS / "amp.TCP.reflection.SYNACK.pcap", "--out", out)
    got = read_windows(str(out))
    wins = [w for o in run_files([ATTACKS / "amp.TCP.reflection.SYNACK.pcap"]) for w in o.windows]
    x = np.concatenate([w.x for w in wins])
    assert np.array_equal(got.x, x)
    assert got.table.column("flow_id").to_pylist() == np.concatenate([w.keys["flow_id"] for w in wins]).tolist()
    assert not list(tmp_path.glob("*.tmp-*"))


@pytest.mark.parametrize(
    "make,code,pattern",
    [
        (lambda d: d / "missing.pcap", 66, r"missing\.pcap: no such file"),
        (lambda d: d, 66, r"is a directory"),
        (lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt", 66, r"not a pcap or pcapng"),
        (
            lambda d: (d / "cut.pcap").write_bytes(MAWI_PCAP.read_bytes()[:100_001]) and d / "cut.pcap",
            65,
            r"cut\.pcap: .* at byte offset \d+",
        ),
    ],
    ids=["missing", "directory", "text", "truncated"],
)
def test_errors_are_one_line_with_an_exit_code(tmp_path, make, code, pattern):
    proc = cli("inspect", "--json", "--pcap", make(tmp_path), check=False)
    assert proc.returncode == code
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("flowlstm-sensor: error: ") and re.search(pattern, err[0])
    if code == 65:  # the packets before the damage were still reported
        assert len(proc.stdout.splitlines()) >= 1


def test_errors_are_at_log_err_when_stderr_is_the_journal(tmp_path):
    """Under systemd (JOURNAL_STREAM names stderr) an error line is prefixed <3>, so journald files it
    at LOG_ERR; a process that only inherited the variable, its stderr elsewhere, writes it plain."""
    argv = [sys.executable, "-m", "sensor.cli", "inspect", "--pcap", str(tmp_path / "missing.pcap")]
    stream = tmp_path / "stream"
    with stream.open("w") as err:
        st = os.fstat(err.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert subprocess.run(argv, stderr=err, env=env).returncode == 66
    assert stream.read_text().startswith("<3>flowlstm-sensor: error: ")
    piped = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert piped.returncode == 66 and piped.stderr.startswith("flowlstm-sensor: error: "), piped.stderr


def test_lifecycle_lines_reach_the_journal_without_verbose(tmp_path):
    """INFO lines (capturing, reloaded, stopped: here 'wrote N windows') go to the journal at <6>
    by default; on a pipe they wait for -v."""
    argv = [sys.executable, "-m", "sensor.cli", "features", "--pcap", str(ATTACKS / "hping3.pcapng")]
    stream = tmp_path / "stream"
    with stream.open("w") as err:
        st = os.fstat(err.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        run = subprocess.run([*argv, "--out", str(tmp_path / "a.parquet")], stderr=err, env=env)
    assert run.returncode == 0 and re.search(r"^<6>flowlstm\S*: wrote \d+ windows", stream.read_text(), re.M)
    piped = subprocess.run([*argv, "--out", str(tmp_path / "b.parquet")], capture_output=True, text=True, env=env)
    assert piped.returncode == 0 and "wrote" not in piped.stderr, piped.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ("inspect", "--pcap", MAWI_PCAP, "--idle-timeout", "-5"),
            "argument --idle-timeout: -5.0; set it to seconds, from 1 to 86400",
        ),
        (
            ("run", "--pcap", MAWI_PCAP, "--eve", "-", "--metrics-port", "70000"),
            "argument --metrics-port: 70000; set it to a TCP port for the Prometheus endpoint on 127.0.0.1, "
            "or 0 for none",
        ),
        (
            ("run", "--pcap", MAWI_PCAP, "--eve", "-", "--snaplen", "many"),
            "argument --snaplen: 'many' is not an integer; set it to an integer from 64 to 262144",
        ),
        (
            ("run", "--pcap", MAWI_PCAP, "--eve", "-", "--idle-timeout", "900", "--active-timeout", "60"),
            "features.active-timeout (60.0) is shorter than features.idle-timeout (900.0)",
        ),
        (("run", "--pcap", MAWI_PCAP, "--interface", "lo", "--eve", "-"), "--pcap and --interface exclude each other"),
        (("run", "--pcap", MAWI_PCAP), "name an output: --eve FILE"),
        (("features", "--pcap", MAWI_PCAP), "the following arguments are required: --out"),
    ],
)
def test_bad_option_values_are_refused_with_the_option_name(args, message):
    """Flags are checked by the same settings table as the configuration file: one line, exit 64."""
    proc = cli(*args, check=False)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 64 and len(err) == 1 and err[0].startswith("flowlstm-sensor: error: "), proc.stderr
    assert message in err[0]


def test_every_flag_of_the_table_is_documented_in_its_command_help():
    from sensor.settings import TABLE

    for cmd in ("run", "inspect", "features"):
        text = cli(cmd, "--help").stdout
        flags = {s.flag for s in TABLE if s.flag and cmd in s.commands}
        assert flags and all(f in text for f in flags), cmd


def test_help_reads_like_a_man_page():
    top = cli("--help").stdout
    assert "commands:" in top and "exit status:" in top
    for cmd in ("inspect", "features"):
        text = cli(cmd, "--help").stdout
        assert "examples:" in text and "exit status:" in text and "--pcap" in text
