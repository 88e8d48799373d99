"""drive(): step sequences run in this thread, each wait answered with poll()."""

from __future__ import annotations

import os
import time

import pytest

from pyslirp.steps import Steps, Wait, drive


def test_steps_that_never_wait_give_their_value():
    def steps() -> Steps[str]:
        return "done"
        yield  # (a generator)

    assert drive(steps()) == "done"


def test_an_error_before_any_wait_goes_on():
    def steps() -> Steps[None]:
        raise LookupError("at once")
        yield

    with pytest.raises(LookupError, match="at once"):
        drive(steps())


def test_each_wait_is_answered_with_the_fds_readable_or_none_at_its_deadline():
    r, w = os.pipe()
    try:
        os.write(w, b"x")

        def steps() -> Steps[list[frozenset[int]]]:
            first = yield Wait((r,), None)
            second = yield Wait((w,), time.monotonic())  # a write end: never readable
            return [first, second]

        assert drive(steps()) == [frozenset({r}), frozenset()]
    finally:
        os.close(r)
        os.close(w)
