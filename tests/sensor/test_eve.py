"""EVE alerts: Suricata's own schema, Community ID against its reference package, thresholding."""
from __future__ import annotations

import calendar
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import communityid
import jsonschema
import numpy as np
import pytest

from sensor.communityid import community_id
from sensor.eve import alert_records, eve_timestamp, to_lines
from sensor.features import SCHEMA
from sensor.outputs import EveFile, HoldingOutput
from sensor.pipeline import run_files
from sensor.threshold import ThresholdRule, Thresholder, default_rules

from ..conftest import ATTACKS, DATA, MAWI_PCAP

SCHEMA_JSON = json.loads((DATA / "suricata" / "schema.json").read_text())


def strict_loads(line: str) -> dict:
    def no_dupes(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError(f"duplicate keys in {keys}")
        return dict(pairs)

    return json.loads(line, object_pairs_hook=no_dupes)


@pytest.fixture(scope="module")
def flood_windows():
    return [w for o in run_files([ATTACKS / "pkt.TCP.synflood.spoofed.pcap"]) for w in o.windows]


def all_alerts(windows, score_of=lambda w: np.ones(len(w), np.float32)):
    return [(w.sec, alert_records(w, score_of(w), 0.5, "test@0123456789ab")) for w in windows]


def test_every_line_is_valid_eve(flood_windows):
    validator = jsonschema.Draft7Validator(SCHEMA_JSON)
    lines = to_lines([r for _, recs in all_alerts(flood_windows[:5]) for r in recs]).decode().splitlines()
    assert len(lines) > 1000
    for line in lines:
        rec = strict_loads(line)
        errors = list(validator.iter_errors(rec))
        assert not errors, errors[0].message
        assert rec["event_type"] == "alert" and rec["alert"]["gid"] == 9330
        assert rec["timestamp"].endswith("+0000")


def test_timestamp_form():
    assert eve_timestamp(1574312400_313671000) == "2019-11-21T05:00:00.313671+0000"


def test_community_id_equals_the_reference_package(flood_windows):
    """Every flow of the flood, and ICMP types, against the communityid package (the spec's reference)."""
    cid = communityid.CommunityID()
    keys = np.concatenate([w.keys for w in flood_windows[:3]])
    for k in keys[:3000]:
        src, dst = k["src"].tobytes()[12:], k["dst"].tobytes()[12:]
        tpl = communityid.FlowTuple.make_tcp(src, dst, int(k["sport"]), int(k["dport"]))
        assert community_id(k["src"].tobytes(), k["dst"].tobytes(), int(k["sport"]), int(k["dport"]), 6) == cid.calc(tpl)
    a, b = bytes(10) + b"\xff\xff" + bytes([192, 168, 0, 89]), bytes(10) + b"\xff\xff" + bytes([192, 168, 0, 1])
    for t, c in ((8, 0), (0, 0), (3, 1), (11, 0)):
        tpl = communityid.FlowTuple.make_icmp(a[12:], b[12:], t, c)
        assert community_id(a, b, t, c, 1) == cid.calc(tpl)
    for seed in (0, 1, 65535):
        c2 = communityid.CommunityID(seed=seed)
        tpl = communityid.FlowTuple.make_udp(a[12:], b[12:], 5353, 53)
        assert community_id(a, b, 5353, 53, 17, seed) == c2.calc(tpl)


@pytest.mark.parametrize("path", [ATTACKS / "nmap.pcapng", MAWI_PCAP], ids=lambda v: v.name)
def test_every_community_id_is_the_one_tshark_computes(path):
    """Each alert's Community ID equals the one tshark's own implementation gives the flow's
    first packet (TCP, UDP, ICMP, ICMPv6); ICMP alerts are written as Suricata writes them."""
    out = subprocess.run(["tshark", "-r", str(path), "--enable-protocol", "communityid", "-T", "fields",
                          "-e", "frame.time_epoch", "-e", "ip.src", "-e", "ipv6.src", "-e", "ip.dst", "-e", "ipv6.dst",
                          "-e", "communityid"], capture_output=True, text=True, check=True).stdout
    reference = {}
    for line in out.splitlines():
        ts, src4, src6, dst4, dst6, cid = line.split("\t")
        if not cid:
            continue
        sec, frac = ts.split(".")
        # An ICMP error quotes the offending packet's header: the outer (first) addresses are the packet's.
        key = (int(sec) * 1_000_000 + int(frac[:6].ljust(6, "0")), (src4 or src6).split(",")[0],
               (dst4 or dst6).split(",")[0])
        reference.setdefault(key, cid)
    validator = jsonschema.Draft7Validator(SCHEMA_JSON)
    alerts = [r for w in (w for o in run_files([path]) for w in o.windows)
              for r in alert_records(w, np.ones(len(w), np.float32), 0.5, "test@0123456789ab")]
    icmp = [r for r in alerts if r["proto"] in ("ICMP", "IPv6-ICMP")]
    assert len(icmp) > 10 and len(alerts) > len(icmp)
    for r in alerts:
        start = r["flow"]["start"]
        us = calendar.timegm(time.strptime(start[:19], "%Y-%m-%dT%H:%M:%S")) * 1_000_000 + int(start[20:26])
        assert r["community_id"] == reference[(us, r["src_ip"], r["dest_ip"])], r
    for r in icmp:
        assert not list(validator.iter_errors(r))
        assert "src_port" not in r and "dest_port" not in r
        # Type and code when the first packet's ICMP header was captured; nothing rather than 0 when not
        # (tshark then hashes without them too).
        assert ("icmp_type" in r) == ("icmp_code" in r) and 0 <= r.get("icmp_type", 0) < 256


def test_thresholding_bounds_a_37000_source_flood(flood_windows):
    candidates = sum(len(recs) for _, recs in all_alerts(flood_windows))
    th = Thresholder(default_rules(count=1, seconds=60))
    ones = lambda w: np.ones(len(w), np.float32)  # noqa: E731
    kept = [r for w in flood_windows for r in alert_records(w, ones(w), 0.5, "t@0", thresholder=th)]
    folded = sum(int(r["alert"]["metadata"].get("flowlstm_suppressed", ["0"])[0]) for r in kept)
    pending = sum(st.folded for st in th._state.values())
    assert candidates > 30_000
    assert len(kept) <= 10  # one victim, a 24 s capture
    assert len(kept) + th.suppressed == candidates
    assert len(kept) + folded + pending == candidates  # every candidate is accounted for once
    by_src = Thresholder([ThresholdRule("limit", "by_src", 1, 60, 0)], max_per_second=10**6)
    n = sum(len(alert_records(w, ones(w), 0.5, "t@0", thresholder=by_src)) for w in flood_windows)
    assert n > 1000  # spoofed sources: by_src is per source, as in Suricata


def _candidates(n, sid=1):
    return np.full(n, sid, np.int64), np.zeros((n, 16), np.uint8), np.zeros((n, 16), np.uint8)


def test_threshold_and_both_types():
    t = Thresholder([ThresholdRule("threshold", "by_rule", 5, 10, 0)], max_per_second=10**6)
    keep, folded = t.decide(100, *_candidates(12))
    assert np.flatnonzero(keep).tolist() == [4, 9] and folded[keep].tolist() == [4, 4]  # every 5th
    b = Thresholder([ThresholdRule("both", "by_rule", 3, 10, 0)], max_per_second=10**6)
    assert np.flatnonzero(b.decide(100, *_candidates(12))[0]).tolist() == [2]
    assert not b.decide(105, *_candidates(12))[0].any()
    keep, folded = b.decide(111, *_candidates(3))  # next period
    assert np.flatnonzero(keep).tolist() == [2] and folded[2] == 9 + 12 + 2
    with pytest.raises(ValueError, match="track"):
        ThresholdRule("limit", "by_nothing")


def _reference(rules, stream):
    """Suricata's semantics one alert at a time: the plain loop the array version must equal."""
    state, out = {}, []
    for sec, sid, src, dst in stream:
        rule = next((r for r in rules if r.sid == sid), None) or next((r for r in rules if r.sid == 0), None)
        if rule is None:
            out.append((sec, sid, src, dst, 0))
            continue
        key = (sid, {"by_src": src, "by_dst": dst, "by_both": (src, dst), "by_rule": None}[rule.track])
        st = state.get(key)
        if st is None or sec - st["start"] >= rule.seconds:
            st = state[key] = {"start": sec, "hits": 0, "emitted": 0, "folded": st["folded"] if st else 0}
        st["hits"] += 1
        if rule.type == "limit":
            keep = st["emitted"] < rule.count
        elif rule.type == "threshold":
            keep = st["hits"] % rule.count == 0
        else:
            keep = st["hits"] >= rule.count and st["emitted"] == 0
        if keep:
            st["emitted"] += 1
            out.append((sec, sid, src, dst, st["folded"]))
            st["folded"] = 0
        else:
            st["folded"] += 1
    return out


@pytest.mark.parametrize("seed", range(6))
def test_thresholder_equals_the_one_at_a_time_semantics(seed):
    rng = np.random.default_rng(seed)
    types, tracks = ("limit", "threshold", "both"), ("by_src", "by_dst", "by_both", "by_rule")
    rules = [ThresholdRule(rng.choice(types), rng.choice(tracks), int(rng.integers(1, 5)), int(rng.integers(1, 6)),
                           sid) for sid in (1, 2, 0)]
    t = Thresholder(rules, max_per_second=10**9)
    stream, got = [], []
    for sec in range(100, 140):
        n = int(rng.integers(0, 60))
        sids = rng.integers(1, 5, n)
        src = np.zeros((n, 16), np.uint8)
        dst = np.zeros((n, 16), np.uint8)
        src[:, 15], dst[:, 15] = rng.integers(0, 4, n), rng.integers(0, 3, n)
        stream += [(sec, int(a), int(b), int(c)) for a, b, c in zip(sids, src[:, 15], dst[:, 15])]
        keep, folded = t.decide(sec, sids, src, dst)
        got += [(sec, int(sids[i]), int(src[i, 15]), int(dst[i, 15]), int(folded[i])) for i in np.flatnonzero(keep)]
    want = _reference(rules, stream)
    assert got == want
    assert t.emitted == len(want) and t.emitted + t.suppressed == len(stream)


def test_per_second_cap_defers_counts_to_the_next_alert():
    t = Thresholder([ThresholdRule("limit", "by_src", 1, 1, 0)], max_per_second=2)
    sids, src, dst = _candidates(5)
    src[:, 15] = np.arange(5)  # five sources, one alert each allowed, two fit the second
    keep, _ = t.decide(100, sids, src, dst)
    assert keep.tolist() == [True, True, False, False, False] and t.suppressed == 3
    keep, folded = t.decide(101, sids[2:], src[2:], dst[2:])  # next period: the cut ones report themselves
    assert keep.tolist() == [True, True, False] and folded[:2].tolist() == [1, 1]
    assert sum(st.folded for st in t._state.values()) == 2  # source 4: cut twice, still owed


WRITER = """
import sys, time
from sensor.outputs import EveFile, HoldingOutput
line = b'{"event_type":"alert","pad":"' + b"x" * 300 + b'"}\\n'
w = EveFile(sys.argv[1])
print("ready", flush=True)
while True:
    w.write(line * 50)
    time.sleep(0.0005)
"""


@pytest.mark.parametrize("run", range(3))
def test_kill_9_never_leaves_a_half_line_behind(tmp_path, run):
    """Every complete line is whole JSON; an unterminated tail (a write cut between pages)
    is never followed by more data: the next open cuts it."""
    path = tmp_path / "eve.json"
    for _ in range(2):  # kill, restart, kill
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.3 + 0.07 * run)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    assert len(complete) > 100_000
    for line in complete.splitlines():
        json.loads(line)
    EveFile(str(path)).close()  # what a restart does
    repaired = path.read_bytes()
    assert repaired == complete


def test_logrotate_rename_then_reopen_loses_nothing(tmp_path):
    path = tmp_path / "eve.json"
    w = EveFile(str(path))
    w.write(b'{"n":1}\n')
    os.rename(path, tmp_path / "eve.json.1")
    w.write(b'{"n":2}\n')  # still the old file until reopened
    w.reopen()
    w.write(b'{"n":3}\n')
    w.close()
    assert (tmp_path / "eve.json.1").read_bytes() == b'{"n":1}\n{"n":2}\n'
    assert path.read_bytes() == b'{"n":3}\n'


@pytest.fixture
def tiny_fs(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); CI runs as root and runs this")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)])


def test_full_disk_leaves_no_partial_line(tiny_fs):
    from sensor.errors import OutputError

    w = EveFile(str(tiny_fs / "eve.json"))
    with pytest.raises(OutputError, match="no partial line"):
        for _ in range(1000):
            w.write(b'{"event_type":"alert","pad":"' + b"y" * 1000 + b'"}\n')
    w.close()
    data = (tiny_fs / "eve.json").read_bytes()
    assert data.endswith(b"\n") and all(json.loads(x) for x in data.splitlines())


def fill(path) -> None:
    """Take every free byte of the file system that holds ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"x" * 1024):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


@pytest.mark.parametrize("limit", [64 << 20, 3000])
def test_full_disk_delays_events_in_order(tiny_fs, caplog, limit):
    out = HoldingOutput(EveFile(str(tiny_fs / "eve.json")), limit=limit)
    try:
        out.write(b'{"n":-1}\n')
        fill(tiny_fs / "filler")
        batches = [b"".join(b'{"n":%d,"pad":"%s"}\n' % (n, b"y" * 80) for n in range(i, i + 10))
                   for i in range(0, 200, 10)]
        with caplog.at_level("WARNING", logger="flowlstm.outputs"):
            for b in batches:
                out.write(b)  # never raises
            assert out.held_bytes > 0
            (tiny_fs / "filler").unlink()
            out.write(b'{"n":200}\n')
    finally:
        out.close()
    got = [json.loads(x)["n"] for x in (tiny_fs / "eve.json").read_bytes().splitlines()]
    assert [r.levelname for r in caplog.records] == ["ERROR", "WARNING"]  # failure and recovery, once each
    if limit > 1 << 20:
        assert got == list(range(-1, 201)) and out.lost_lines == 0
    else:  # over the limit the oldest held lines went, whole, and were counted
        missing = sorted(set(range(-1, 201)) - set(got))
        assert got[0] == -1 and got[-1] == 200 and got == sorted(got)
        assert missing == list(range(missing[0], missing[-1] + 1))  # one run: the oldest held when it began
        assert out.lost_lines == len(missing) > 0


def test_features_schema_names_used_by_classify_exist():
    for name in ("agg_fwd_src_spec", "agg_fwd_dst_spec", "log_pkts_rev", "frac_syn", "frac_ack"):
        SCHEMA.index(name)


def test_open_cuts_an_unterminated_tail(tmp_path):
    path = tmp_path / "eve.json"
    path.write_bytes(b'{"n":1}\n{"n":2}\n{"n":')
    w = EveFile(str(path))
    w.write(b'{"n":3}\n')
    w.close()
    assert path.read_bytes() == b'{"n":1}\n{"n":2}\n{"n":3}\n'


def _run_to(spec: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sensor.cli", "run", "--no-progress", "--threshold", "0",
                             "--limit", "1000", "--pcap", str(ATTACKS / "amp.TCP.reflection.SYNACK.pcap"),
                             "--eve", spec], stderr=subprocess.PIPE, text=True)


def test_unix_dgram_one_event_per_datagram(tmp_path):
    import socket as so

    path = str(tmp_path / "eve.sock")
    rx = so.socket(so.AF_UNIX, so.SOCK_DGRAM)
    rx.bind(path)
    rx.setsockopt(so.SOL_SOCKET, so.SO_RCVBUF, 8 << 20)
    rx.settimeout(10)
    proc = _run_to(f"unix_dgram:{path}")
    got = []
    try:
        while True:
            d = rx.recv(1 << 16)
            got.append(strict_loads(d.decode()))
            if got[-1]["event_type"] == "stats":
                break
    finally:
        proc.wait(timeout=60)
    validator = jsonschema.Draft7Validator(SCHEMA_JSON)
    for ev in got:
        validator.validate(ev)
    alerts = [e for e in got if e["event_type"] == "alert"]
    assert len(alerts) == got[-1]["stats"]["detect"]["alert"] > 10


def test_unix_stream_newline_delimited(tmp_path):
    import socket as so

    path = str(tmp_path / "eve.sock")
    srv = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(30)
    proc = _run_to(f"unix_stream:{path}")
    conn, _ = srv.accept()
    time.sleep(1.0)  # a slow reader: the sensor must queue, not block or cut lines
    data = b""
    while chunk := conn.recv(1 << 16):
        data += chunk
    assert proc.wait(timeout=60) == 0
    lines = data.decode().splitlines()
    assert data.endswith(b"\n") and json.loads(lines[-1])["event_type"] == "stats"
    assert all(strict_loads(x) for x in lines)
    assert len(lines) - 1 == json.loads(lines[-1])["stats"]["detect"]["alert"]


def test_socket_without_listener_drops_and_counts(tmp_path):
    from sensor.outputs import EveSocket

    s = EveSocket(str(tmp_path / "nobody.sock"), "dgram")
    s.write(b'{"a":1}\n{"a":2}\n')
    assert s.dropped == 2 and s.sent == 0
    s.close()


@pytest.mark.skipif(not shutil.which("fever"), reason="needs DCSO's fever (Debian package fever; scripts/setup.sh installs it)")
def test_fever_forwards_every_alert_from_the_unix_stream(tmp_path):
    """fever, a real EVE consumer, reads our unix_stream output and forwards every event unchanged.

    fever's legacy `-o` forwarder has an unbuffered channel and drops what arrives while it
    writes, so the consumer is configured the way its example config recommends, with a buffer.
    """
    import socket as so

    out_path, in_path = tmp_path / "out.sock", tmp_path / "in.sock"
    (tmp_path / "fever.yaml").write_text(
        f"multi-forward:\n  all:\n    socket: {out_path}\n    all: true\n    buffer-length: 100000\n")
    srv = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    srv.bind(str(out_path))
    srv.listen(1)
    srv.settimeout(30)
    fever = subprocess.Popen(["fever", "run", "--config", str(tmp_path / "fever.yaml"), "--dummy",
                              "-i", str(in_path), "--mgmt-socket", str(tmp_path / "mgmt.sock"),
                              "--logfile", str(tmp_path / "fever.log")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        conn, _ = srv.accept()
        deadline = time.monotonic() + 30
        while not in_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc = _run_to(f"unix_stream:{in_path}")
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
        conn.settimeout(30)
        data = b""
        while not data.endswith(b"\n") or b'"event_type":"stats"' not in data.rsplit(b"\n", 2)[-2]:
            chunk = conn.recv(1 << 16)
            assert chunk, "fever closed the connection early"
            data += chunk
    finally:
        fever.terminate()
        fever.wait(timeout=30)
    got = data.decode().splitlines()
    reference = tmp_path / "eve.json"
    assert _run_to(str(reference)).wait(timeout=60) == 0
    want = reference.read_text().splitlines()
    alerts = [x for x in got if json.loads(x)["event_type"] == "alert"]
    assert len(alerts) == json.loads(got[-1])["stats"]["detect"]["alert"] > 10
    assert alerts == [x for x in want if json.loads(x)["event_type"] == "alert"]
    assert "level=warn" not in (tmp_path / "fever.log").read_text()
