"""``python -m sensor.cli``: the same as ``flowlstm-sensor``."""

import sys

from . import main

sys.exit(main())
