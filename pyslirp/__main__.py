"""``python -m pyslirp``: the same as the ``pyslirp`` command."""

import sys

from .cli import main

sys.exit(main())
