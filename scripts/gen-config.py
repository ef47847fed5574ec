#!/usr/bin/env python3
"""Write etc/flowlstm/sensor.yaml from the settings table (sensor/settings.py).

The shipped file is generated, never edited by hand: tests/sensor/test_config.py
fails when the two disagree.  Run after changing the table:
    .venv/sensor/bin/python scripts/gen-config.py
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sensor.settings import render_yaml  # noqa: E402

(ROOT / "etc" / "flowlstm" / "sensor.yaml").write_text(render_yaml())
