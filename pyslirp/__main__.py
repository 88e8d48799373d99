"""``python -m pyslirp``: the same as the ``pyslirp`` command."""

from ._entry import main

main()
