"""``python -m npufleet.cli``, the same as the ``npufleet`` command."""

import sys

from npufleet.cli import main

sys.exit(main())
