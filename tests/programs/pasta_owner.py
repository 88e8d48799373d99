"""A process that owns a pasta (with a death signal): prints pasta's pid, then waits for
EOF on stdin.  usage: pasta_owner.py TMP_DIR NETNS PDEATHSIG"""

import sys

import pyslirp
from pyslirp import pasta


def main() -> None:
    opts = pasta.SetupOptions(
        config=pyslirp.Config(tmp_dir=sys.argv[1]), netns=sys.argv[2], pdeathsig=int(sys.argv[3])
    )
    result = pasta.setup(opts)
    print(result.pid, flush=True)
    sys.stdin.read()
    result.close()


if __name__ == "__main__":
    main()
