"""EVE alert records: Suricata's own schema, its timestamp form, the fields classify reads."""

from __future__ import annotations

import jsonschema
import numpy as np
import pytest

from sensor.eve import AlertConfig, alert_records, eve_timestamp, to_lines
from sensor.features import SCHEMA

from .evecheck import SCHEMA_JSON, strict_loads


def all_alerts(windows, score_of=lambda w: np.ones(len(w), np.float32), per="aggregate"):
    cfg = AlertConfig(per=per)
    return [(w.sec, alert_records(w, score_of(w), 0.5, "test@0123456789ab", cfg)) for w in windows]


@pytest.mark.slow
def test_every_line_is_valid_eve(flood_windows):
    validator = jsonschema.Draft7Validator(SCHEMA_JSON)
    per_flow = to_lines([r for _, recs in all_alerts(flood_windows[:5], per="flow") for r in recs]).decode()
    grouped = to_lines([r for _, recs in all_alerts(flood_windows[:5]) for r in recs]).decode()
    assert len(per_flow.splitlines()) > 1000 and len(grouped.splitlines()) > 10
    for line in per_flow.splitlines() + grouped.splitlines():
        rec = strict_loads(line)
        errors = list(validator.iter_errors(rec))
        assert not errors, errors[0].message
        assert rec["event_type"] == "alert" and rec["alert"]["gid"] == 9330
        assert rec["timestamp"].endswith("+0000")


def test_timestamp_form():
    assert eve_timestamp(1574312400_313671000) == "2019-11-21T05:00:00.313671+0000"


def test_features_schema_names_used_by_classify_exist():
    for name in ("agg_fwd_src_spec", "agg_fwd_dst_spec", "log_pkts_rev", "frac_syn", "frac_ack"):
        SCHEMA.index(name)
