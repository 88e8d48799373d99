"""Print get_rootless_port_child_ip(None, NET_STATUS) for the net status JSON on stdin:
run with different PYTHONHASHSEEDs, it shows the answer does not hang on dict order."""

import json
import sys

from pyslirp.addresses import get_rootless_port_child_ip

print(get_rootless_port_child_ip(None, json.loads(sys.stdin.read())))
