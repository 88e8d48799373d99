"""``pyslirp`` as the unprivileged user nobody: ``python3 as_nobody.py ARGS...``.

Imports as root (the interpreter may live under a root-only home), then drops to nobody
for good before ``main`` touches anything; the environment is the caller's.
"""

import encodings.idna  # noqa: F401 - socket loads it lazily
import os
import sys
import tomllib  # noqa: F401 - config loads it lazily

import pyslirp.pasta  # run loads it lazily, for --network pasta
import pyslirp.sandbox  # noqa: F401 - the CLI loads it lazily
from pyslirp.cli import main

NOBODY = 65534

os.setgroups([])
os.setresgid(NOBODY, NOBODY, NOBODY)
os.setresuid(NOBODY, NOBODY, NOBODY)
sys.exit(main(sys.argv[1:]))
