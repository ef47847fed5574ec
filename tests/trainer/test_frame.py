"""The windows as Spark blocks: what the executors compute equals the same computation on the
whole array, and every seeded draw is the same run after run."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from sensor.calibrate import threshold_for_flow_budget
from sensor.features import SCHEMA
from sensor.parquet import read_windows
from trainer.frame import (
    Block,
    Scorer,
    Summary,
    balance_plan,
    balanced,
    before_cut,
    both,
    budget_ranks,
    by_trace,
    fit_normalization,
    gather,
    held_seconds,
    in_seconds,
    late_seconds,
    normalized,
    read_blocks,
    sample,
    scatter,
    score_blocks,
    side,
    summarize,
    time_cuts,
    window_kinds,
)
from trainer.spark import spark_context
from trainer.train import class_weights


@pytest.fixture(scope="module")
def sc() -> Iterator[object]:
    with spark_context("local[2]", "flowlstm-test-frame") as context:
        yield context


@pytest.fixture(scope="module")
def whole(workdir):
    """The extraction's windows read in one piece, the way the blocks must add up to."""
    wf = read_windows(str(workdir / "feat" / "trace=mix" / "part-0.parquet"))
    return wf


def _block(key: str, y: list[int], family: list[str], trace: str = "t") -> Block:
    n = len(y)
    tax = np.array([{"": "", "scan": "ntscSYN", "flood": "DDoSSYN", "beacon": "c2-beacon"}[f] for f in family], object)
    return Block(
        key,
        trace,
        np.arange(n * 6, dtype=np.float32).reshape(n, 3, 2),
        np.array(y, np.int8),
        np.arange(n, dtype=np.int64),
        tax,
        np.arange(n, dtype=np.uint64),
    )


def test_blocks_add_up_to_the_trace(sc, workdir, whole):
    blocks = read_blocks(sc, workdir / "feat")
    s = summarize(blocks)
    y = whole.table.column("label").to_numpy()
    assert s.windows == len(y) and s.anomalous == int(y.sum())
    sec = whole.table.column("sec").to_numpy()
    assert s.traces == {"mix": [len(y), int(y.sum()), int(sec.min()), int(sec.max())]}
    joined = gather(blocks)
    assert joined is not None and joined.x.tobytes() == whole.x.tobytes()


def test_per_trace_caps_keep_at_most_that_many_of_each_class_the_same_every_time(sc, workdir):
    s1 = summarize(read_blocks(sc, workdir / "feat", max_benign=500, max_anomalous=50, seed=3))
    assert (s1.windows, s1.anomalous) == (550, 50)
    a = gather(read_blocks(sc, workdir / "feat", max_benign=500, max_anomalous=50, seed=3))
    b = gather(read_blocks(sc, workdir / "feat", max_benign=500, max_anomalous=50, seed=3))
    assert a is not None and b is not None and a.x.tobytes() == b.x.tobytes()


def test_the_benign_draw_is_topped_up_to_a_floor_per_kind(sc, workdir, whole):
    """Rare kinds of benign windows (here whatever the trace has least of) keep at least the
    floor, or all they have; the uniform draw under them is the one without a floor."""
    y = whole.table.column("label").to_numpy()
    kinds = window_kinds(whole.x)
    have = np.bincount(kinds[y == 0], minlength=8)
    assert (have > 0).sum() >= 2  # the fixture has benign windows of several kinds
    floor = 40
    plain = gather(read_blocks(sc, workdir / "feat", max_benign=100, max_anomalous=50, seed=3))
    topped = gather(
        read_blocks(sc, workdir / "feat", max_benign=100, max_anomalous=50, seed=3, min_benign_per_kind=floor)
    )
    assert plain is not None and topped is not None
    pk, tk = (np.bincount(window_kinds(b.x[b.y == 0]), minlength=8) for b in (plain, topped))
    assert np.array_equal(tk, np.maximum(pk, np.minimum(have, floor)))
    assert (tk > pk).any()
    # the windows drawn without a floor are all still there
    assert set(map(bytes, plain.x)) <= set(map(bytes, topped.x))


def test_normalization_from_block_moments_equals_numpy_over_the_present_seconds(sc, workdir, whole):
    norm = fit_normalization(read_blocks(sc, workdir / "feat"))
    rows = whole.x.reshape(-1, whole.x.shape[-1]).astype(np.float64)
    rows = rows[rows[:, 0] > 0]
    mean, std = rows.mean(axis=0), rows.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)
    mean[0], std[0] = 0.0, 1.0
    assert np.allclose(norm.mean, mean, rtol=1e-5, atol=1e-6)
    assert np.allclose(norm.scale, std, rtol=1e-5, atol=1e-6)
    assert norm.ignored == ()
    # Features the models are trained without keep their statistics, and every window the
    # models see (training, calibration, test, the sensor's) has them at 0.
    drop = fit_normalization(read_blocks(sc, workdir / "feat"), ("ctx_udp_ratio", "src_oneway"))
    assert drop.ignored == (SCHEMA.names.index("src_oneway"), SCHEMA.names.index("ctx_udp_ratio"))
    np.testing.assert_array_equal(drop.mean, norm.mean)
    seen = normalized(read_blocks(sc, workdir / "feat"), drop).map(lambda b: b.x).collect()
    x = np.concatenate(seen)
    assert not x[..., list(drop.ignored)].any() and x[..., SCHEMA.names.index("ctx_tcp_ratio")].any()


def test_the_time_split_cuts_each_trace_at_a_second_and_loses_nothing(sc, workdir, whole):
    blocks = read_blocks(sc, workdir / "feat")
    s = summarize(blocks)
    cuts = time_cuts(s, 0.3)
    lo, hi = s.traces["mix"][2:]
    assert cuts == {"mix": lo + int(np.ceil((hi - lo) * 0.7))}
    tr = summarize(side(blocks, before_cut(cuts, test=False)))
    te = summarize(side(blocks, before_cut(cuts, test=True)))
    assert tr.windows + te.windows == s.windows
    assert tr.traces["mix"][3] < cuts["mix"] <= te.traces["mix"][2]
    assert te.anomalous > 0 and tr.anomalous > 0  # both attacks straddle the cut (conftest)
    assert summarize(side(blocks, by_trace(["other"]))).windows == 0


def test_calibration_seconds_are_the_last_of_the_training_side_and_train_nothing(sc, workdir):
    blocks = read_blocks(sc, workdir / "feat")
    s = summarize(blocks)
    lo, hi = s.traces["mix"][2:]
    cuts = time_cuts(s, 0.3)
    for train, held, end in ((before_cut(cuts, test=False), 0.3, cuts["mix"]), (by_trace(["mix"]), 0.0, hi + 1)):
        early, late = late_seconds(s, 0.2, held)
        fit, cal = both(train, early), both(train, late)
        f, c, t = (summarize(side(blocks, m)) for m in (fit, cal, train))
        assert f.windows + c.windows == t.windows and c.windows > 0
        start = lo + int(np.ceil((hi - lo) * (1 - 0.2 - held)))
        assert f.traces["mix"][3] < start <= c.traces["mix"][2] and c.traces["mix"][3] < end


def test_leaving_a_family_out_moves_all_its_seconds_to_test(sc, workdir):
    blocks = read_blocks(sc, workdir / "feat")
    fam = sorted(f for f in summarize(blocks).families if f)[0]
    held = held_seconds(blocks, fam)
    tr = summarize(side(blocks, in_seconds(held, test=False)))
    te = summarize(side(blocks, in_seconds(held, test=True)))
    assert fam not in tr.families and te.families[fam] == summarize(blocks).families[fam]
    assert tr.windows + te.windows == summarize(blocks).windows


def test_small_families_are_drawn_up_to_the_mean_and_every_window_is_kept_once():
    parts = [
        _block("a", [0] * 50 + [1] * 60, [""] * 50 + ["flood"] * 60),
        _block("b", [1] * 30 + [1] * 6, ["flood"] * 30 + ["beacon"] * 6),
        _block("c", [1] * 4 + [0] * 3, ["scan"] * 4 + [""] * 3),
    ]
    total = Summary.of(parts[0])
    for b in parts[1:]:
        total = total.merge(Summary.of(b))
    plan = balance_plan(total, seed=3)
    out = [balanced(b, plan, seed=3) for b in parts]
    fam = np.concatenate([b.family for b in out])
    # mean family = (90 + 6 + 4) / 3 = 33.3 -> 34 each for the small ones, the big one as it is
    assert (fam == "dos").sum() == 90 and (fam == "c2-beacon").sum() == 34 and (fam == "network-scan").sum() == 34
    assert sum(int((b.y == 0).sum()) for b in out) == 53
    for b, o in zip(parts, out, strict=True):
        assert set(o.flow.tolist()) == set(b.flow.tolist()) and np.all(np.diff(o.flow.astype(np.int64)) >= 0)
    again = [balanced(b, balance_plan(total, seed=3), seed=3) for b in parts]
    assert all(np.array_equal(a.flow, o.flow) for a, o in zip(again, out, strict=True))


def test_each_class_weighs_half_of_the_training_split():
    w = class_weights(98_769, 1_234)
    assert w == {0: 100_003 / (2 * 98_769), 1: 100_003 / (2 * 1_234)}
    assert np.isclose(w[0] * 98_769, 100_003 / 2) and np.isclose(w[1] * 1_234, 100_003 / 2)


def test_windows_are_dealt_over_partitions_the_same_way_every_run(sc, workdir):
    blocks = read_blocks(sc, workdir / "feat")
    one = scatter(blocks, 3, seed=5).glom().collect()
    two = scatter(blocks, 3, seed=5).glom().collect()
    assert len(one) == 3 and [[b.key for b in p] for p in one] == [[b.key for b in p] for p in two]
    assert all(a.x.tobytes() == b.x.tobytes() for p, q in zip(one, two, strict=True) for a, b in zip(p, q, strict=True))
    for part in one:  # each partition has both classes
        y = np.concatenate([b.y for b in part])
        assert 0 < int(y.sum()) < len(y)
    got = np.sort(np.concatenate([b.flow for p in one for b in p]))
    whole = gather(blocks)
    assert whole is not None and np.array_equal(got, np.sort(whole.flow))


def test_a_sample_keeps_about_its_fraction_and_is_seeded(sc, workdir):
    blocks = read_blocks(sc, workdir / "feat")
    n = summarize(blocks).windows
    a, b = gather(sample(blocks, 0.1, 1, "x")), gather(sample(blocks, 0.1, 1, "x"))
    assert a is not None and b is not None and np.array_equal(a.flow, b.flow)
    assert abs(len(a) - 0.1 * n) < 5 * np.sqrt(0.1 * n)


def test_the_flow_budget_ranked_in_spark_gives_the_threshold_of_the_whole_array(sc, workdir):
    blocks = read_blocks(sc, workdir / "feat")
    whole = gather(blocks)
    assert whole is not None
    coef = np.random.default_rng(0).normal(size=whole.x[0].size)
    scorer = Scorer.linear("probe", coef, 0.25)
    with score_blocks(sc, blocks, [scorer]) as scored:
        ((n, ranked),) = budget_ranks(scored, [30.0])
    score = scorer(whole.x).astype(np.float64)
    benign = whole.y == 0
    keys, inv = np.unique(whole.flow[benign], return_inverse=True)
    top = np.full(len(keys), -np.inf)
    np.maximum.at(top, inv, score[benign])
    ranked_np = np.sort(top)[::-1]
    allowed = int(np.floor(len(keys) * 30.0 / 1e4))
    assert n == len(keys) and np.allclose(ranked, ranked_np[: allowed + 1], rtol=1e-6)
    thr = threshold_for_flow_budget(n, ranked, 30.0)
    alerted = int((top >= thr).sum())
    assert alerted <= allowed and (top >= ranked_np[allowed]).sum() > allowed  # the lowest such threshold


def test_keras_scores_in_padded_batches_equal_the_model_on_each_window():
    """Scorer.keras pads blocks to a few batch shapes (Keras retraces for every new one): each
    row's score is the model's on that window alone, for blocks shorter and longer than a batch."""
    import keras

    from trainer.frame import PREDICT_BATCH
    from trainer.model import build_lstm

    keras.utils.set_random_seed(3)
    model = build_lstm(12, 3)
    scorer = Scorer.keras("lstm", model)
    rng = np.random.default_rng(5)
    for n in (1, 37, PREDICT_BATCH + 5):
        x = rng.normal(size=(n, 3, 12)).astype(np.float32)
        want = np.concatenate([np.asarray(model(x[i : i + 1], training=False)) for i in range(0, n, max(1, n // 7))])
        got = scorer(x)
        assert got.shape == (n,) and got.dtype == np.float32
        np.testing.assert_allclose(got[:: max(1, n // 7)], want[:, 0], rtol=1e-5, atol=1e-6)
