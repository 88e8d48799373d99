"""Spawns from threads with a 32 KiB stack (with and without a death signal, which goes
through pyslirp's spawner thread, made with that stack size too); prints both statuses."""

from __future__ import annotations

import threading

import pyslirp


def main() -> None:
    threading.stack_size(32 * 1024)
    statuses: list[int] = []
    for pdeathsig in (0, 9):
        thread = threading.Thread(
            target=lambda sig=pdeathsig: statuses.append(
                pyslirp.spawn(["true"], pdeathsig=sig).wait()
            )
        )
        thread.start()
        thread.join()
    print(*statuses)


if __name__ == "__main__":
    main()
