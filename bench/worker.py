"""A Python process of a given size that runs the Python cases for ``run.py``.

``python bench/worker.py RSS_MIB`` grows to about RSS_MIB of touched memory, then answers
JSON requests, one a line on stdin, with one JSON line each on its original stdout (fd 1
itself is pointed at stderr, so nothing a child prints can garble the replies).
"""

from __future__ import annotations

import json
import mmap
import os
import sys
import traceback

import pycases

PAGE = 4096


def grow_to(target_kib: int) -> mmap.mmap | None:
    """Touch anonymous memory (4 KiB pages, no THP) until RSS is about ``target_kib``."""
    missing = target_kib - pycases._rss_kib()
    if missing <= 0:
        return None
    size = missing * 1024 // PAGE * PAGE
    heap = mmap.mmap(-1, size)
    heap.madvise(mmap.MADV_NOHUGEPAGE)
    heap[::PAGE] = b"\1" * (size // PAGE)
    return heap


def main() -> None:
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    heap = grow_to(int(sys.argv[1]) * 1024)
    replies.write(json.dumps({"rss_kib": pycases._rss_kib()}) + "\n")
    try:
        for line in sys.stdin:
            request = json.loads(line)
            try:
                reply = pycases.CASES[request["case"]](request)
            except Exception as exc:
                traceback.print_exc()
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            reply["rss_kib"] = pycases._rss_kib()
            replies.write(json.dumps(reply) + "\n")
    except KeyboardInterrupt:
        pass  # every case has already stopped what it started
    del heap


if __name__ == "__main__":
    main()
