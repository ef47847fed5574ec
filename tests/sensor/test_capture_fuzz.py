"""Bounded fuzzing of the reader: damaged real captures yield valid batches or one CaptureError.

Seeds are prefixes of real captures (pcap and pcapng, Ethernet with IPv4, IPv6 and fragments);
hypothesis overwrites bytes, cuts the file and swaps in random link types. Nothing but a
``CaptureError`` may escape, and every batch must be well-formed.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensor import model
from sensor.addresses import IPV4_MAPPED_PREFIX
from sensor.capture import files, read_packets
from sensor.capture.records import PACKET_DTYPE
from sensor.errors import CaptureError

from ..conftest import ATTACKS, DATA, MAWI_PCAP
from ..fuzz import harness

FTP = DATA / "zeek" / "ftp_bruteforce.pcap"
AMP = ATTACKS / "amp.dns.RRSIG.fragmented.pcap"
SIZE = 6000


def _pcapng(path) -> bytes:
    return subprocess.run(["editcap", "-F", "pcapng", str(path), "-"], capture_output=True, check=True).stdout


SEEDS = {
    "pcap-ftp": FTP.read_bytes()[:SIZE],
    "pcap-mawi": MAWI_PCAP.read_bytes()[:SIZE],
    "pcap-amp": AMP.read_bytes()[200_000 : 200_000 + SIZE],  # (header patched in below)
    "pcapng-ftp": _pcapng(FTP)[:SIZE],
    "pcapng-hping3": (ATTACKS / "hping3.pcapng").read_bytes()[:SIZE],
}
SEEDS["pcap-amp"] = AMP.read_bytes()[:24] + SEEDS["pcap-amp"]  # mid-file: starts mid-record
LINKTYPES = [None, 0, 1, 12, 101, 108, 113, 228, 229, 276, 105, 119, 127, 163, 192, 65535]
MAPPED = np.frombuffer(IPV4_MAPPED_PREFIX, dtype=np.uint8)


def consume(path) -> None:
    try:
        for batch in read_packets(path, batch_size=64):
            assert batch.dtype == PACKET_DTYPE
            assert np.all(batch["cap_len"] <= 262144)
            assert np.all(np.isin(batch["l3"], (0, 4, 6)))
            assert np.all(batch["hdr"] < 16) and np.all(batch["frag"] < 16)  # HDR_* and FRAG_* bits only
            ip = batch["l3"] > 0
            assert np.all(batch["sport"][~ip] == 0) and np.all(batch["proto"][~ip] == 0)
            assert np.all(batch["src"][batch["l3"] == 4][:, :12] == MAPPED)
    except CaptureError:
        pass


def _set_linktype(data: bytearray, kind: str, linktype: int) -> None:
    if kind.startswith("pcap-"):
        data[20:24] = linktype.to_bytes(4, "little")
        return
    # pcapng: the first IDB follows the SHB
    shb_len = int.from_bytes(data[4:8], "little")
    if shb_len + 10 <= len(data) and data[shb_len : shb_len + 4] == b"\x01\x00\x00\x00":
        data[shb_len + 8 : shb_len + 10] = linktype.to_bytes(2, "little")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(sorted(SEEDS)),
    edits=st.lists(st.tuples(st.integers(0, SIZE - 1), st.integers(0, 255)), min_size=0, max_size=12),
    cut=st.integers(0, SIZE + 24),
    linktype=st.sampled_from(LINKTYPES),
)
def test_mutated_captures_never_crash(tmp_path, kind, edits, cut, linktype):
    data = bytearray(SEEDS[kind])
    if linktype is not None:
        _set_linktype(data, kind, linktype)
    for pos, val in edits:
        if pos < len(data):
            data[pos] = val
    f = tmp_path / "fuzz.bin"
    f.write_bytes(bytes(data[:cut]))
    consume(f)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(sorted(SEEDS)),
    # a corrupt length field at a random place, in the file header or a record/block header
    at=st.integers(0, 400),
    value=st.sampled_from([0, 1, 3, 11, 12, 13, 0x7FFFFFFF, 0xFFFFFFFF, 0x10000, 262145]),
)
def test_corrupt_length_fields_never_crash(tmp_path, kind, at, value):
    data = bytearray(SEEDS[kind])
    data[at : at + 4] = value.to_bytes(4, "little")
    f = tmp_path / "fuzz.bin"
    f.write_bytes(bytes(data))
    consume(f)


# -- the campaign harness (tests/fuzz/harness.py): quick mode, and that it sees each kind of finding


def test_quick_campaign_finds_nothing_and_reaches_the_readers_error_paths():
    summary = harness.run_quick(300)
    assert not summary.findings, summary.report()
    # the mutations get past the magic: many inputs still read to their end, and the
    # rejected ones fail in the readers' own checks, for every format
    assert summary.outcomes["ok"] >= 30, summary.report()
    reasons = " | ".join(summary.reasons)
    for expected in (
        "record claims",
        "block length is invalid",
        "file ends inside a packet record",
        "file ends inside a block",
        "compressed stream is damaged",
        "if_tsoffset",
    ):
        assert expected in reasons, summary.report()


def test_quick_campaign_finds_the_if_tsoffset_overflow_when_its_check_is_gone(monkeypatch):
    monkeypatch.setattr(files, "_MAX_TSOFFSET_S", 1 << 64)
    summary = harness.run_quick(300, names=["pcapng"])
    assert {f["signature"].split(" at ")[0] for f in summary.findings} == {"OverflowError"}, summary.report()


def test_quick_campaign_on_the_config_and_bundle_loaders_finds_nothing_and_reaches_their_checks():
    summary = harness.run_quick(450, names=["config", "metadata", "model"])
    assert not summary.findings, summary.report()
    # Some mutated configs still load (a few percent: 17-20 of these 450 as the seed files' text
    # has changed); all of them rejected would mean the mutations no longer get past the parser.
    assert summary.outcomes["ok"] >= 10, summary.report()
    reasons = " | ".join(summary.reasons)
    for expected in (
        "not valid YAML",  # config: the parser
        "unknown key",  # config: the key table
        "normalization.",  # metadata: the field checks
        "LiteRT cannot load it",  # model: the runtime's own checks
        "smoke inference",  # model: loads, but scores wrong
    ):
        assert expected in reasons, summary.report()


def test_quick_campaign_finds_unforeseen_bundle_errors_when_the_catch_all_is_gone(monkeypatch):
    @contextlib.contextmanager
    def no_catch_all(where, what):
        yield

    monkeypatch.setattr(model, "_check", no_catch_all)
    # in-process, as before the forked check (these 600 inputs hold no model that crashes LiteRT)
    monkeypatch.setattr(model, "_vet", lambda *args: None)
    summary = harness.run_quick(600, names=["model"])
    assert summary.findings and {f["kind"] for f in summary.findings} == {"crash"}, summary.report()


def _misbehave(data: bytes) -> None:
    if data == b"crash":
        raise ValueError("not a FlowlstmError")
    if data == b"hang":
        time.sleep(60)  # blocked: a hang by the clock
    if data == b"spin":
        while True:  # busy: a hang by CPU time, before the clock's limit
            pass
    if data == b"memory":
        bytearray(4 << 30)
    if data == b"signal":
        os.kill(os.getpid(), signal.SIGKILL)  # as a fault in C code would end it
    if data == b"rejected":
        raise CaptureError("x: rejected")


def test_campaign_records_crashes_hangs_memory_and_deaths_with_reproducers(tmp_path, monkeypatch):
    kinds = [b"crash", b"hang", b"memory", b"signal", b"fine", b"rejected", b"spin"]
    monkeypatch.setitem(
        harness.TARGETS, "misbehaving", harness.Target(lambda: kinds, lambda s, rng, seeds: s, _misbehave)
    )
    summary = harness.campaign(["misbehaving"], 14, jobs=2, out=tmp_path, hang_s=1, mem_mb=256)
    assert dict(summary.outcomes) == {"crash": 2, "hang": 4, "memory": 2, "signal": 2, "ok": 2, "rejected": 2}
    found = {(f["kind"], f["input"]) for f in summary.findings}
    assert found == {
        ("crash", 0),
        ("crash", 7),
        ("hang", 1),
        ("hang", 8),
        ("hang", 6),
        ("hang", 13),
        ("memory", 2),
        ("memory", 9),
        ("signal", 3),
        ("signal", 10),
    }
    for kind, i in found:
        assert len(list(tmp_path.glob(f"{kind}-*-{i}.bin"))) in ((0, 1) if kind == "hang" else (1,))
    # the four hangs share a signature, which keeps at most 3 reproducers (whichever came first)
    assert len(list(tmp_path.glob("hang-*.bin"))) == 3
    crash = next(tmp_path.glob("crash-*-0.bin"))
    assert (
        crash.read_bytes() == b"crash" and json.loads(crash.with_suffix(".json").read_text())["target"] == "misbehaving"
    )
    assert harness.replay([crash]) == 1
    assert json.loads((tmp_path / "summary.json").read_text())["inputs"] == 14
    assert summary.next_input == 14


def _slow(data: bytes) -> None:
    time.sleep(0.05)


def test_a_campaign_stopped_by_the_clock_ran_every_input_below_where_it_continues(tmp_path, monkeypatch):
    # Targets alternate by input number and differ in cost; workers striding over every
    # other input each ran one target, so the fast one ran far ahead and a campaign stopped
    # by the clock left a gap that no --start could continue without re-running inputs.
    monkeypatch.setitem(harness.TARGETS, "slow", harness.Target(lambda: [b"s"], lambda s, rng, seeds: s, _slow))
    monkeypatch.setitem(harness.TARGETS, "fast", harness.Target(lambda: [b"f"], lambda s, rng, seeds: s, len))
    summary = harness.campaign(["slow", "fast"], 10**6, jobs=2, start=100, out=tmp_path, seconds=1.5)
    assert 100 < summary.next_input < 10**6
    assert summary.inputs == summary.next_input - 100
    assert summary.last_input == summary.next_input - 1
    assert json.loads((tmp_path / "summary.json").read_text())["next_input"] == summary.next_input


def test_json_mutations_never_edit_their_table_of_values():
    # Found by the long campaign: values taken from the table were shared, so a later edit
    # inside one changed the table and once put a list inside itself (seed 9, input 552870).
    before = repr(harness._JSON_VALUES)
    seeds = harness.metadata_seeds()
    for i in range(3000):
        harness.mutate_json(seeds[i % len(seeds)], random.Random(i), seeds)
    assert repr(harness._JSON_VALUES) == before
    name, data = harness.generate(list(harness.TARGETS), 9, 552870)
    assert name == "metadata" and json.loads(data)
