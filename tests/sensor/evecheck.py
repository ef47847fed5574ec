"""What every EVE line the sensor writes must pass, for the test modules that read its output.

Suricata's own EVE schema (``tests/data/suricata/schema.json``) and JSON that
repeats no key (``json.loads`` would keep the last one silently).
"""

from __future__ import annotations

import json

from ..conftest import DATA

SCHEMA_JSON = json.loads((DATA / "suricata" / "schema.json").read_text())


def strict_loads(line: str) -> dict:
    """``json.loads`` that refuses an object with a duplicate key."""

    def no_dupes(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError(f"duplicate keys in {keys}")
        return dict(pairs)

    return json.loads(line, object_pairs_hook=no_dupes)
