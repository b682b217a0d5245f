"""The cycle collector as the daemon tunes it (`gc_tuning.py`): how many objects one collection
examines is what a probe waits for, and it must not grow with the data the first pass keeps.
Counted, not timed: at each collection's start the callback counts the objects of the
generations it is about to examine (CPython 3.11 Modules/gcmodule.c `gc_collect_main` examines
the collected generation and every younger one)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from hybrid_gateway import gc_tuning

#: Long-lived objects a first pass at 50,000 nodes keeps, about (gc_tuning's docstring).
PASS_KEEPS = 1_200_000
#: The most objects one collection may examine meanwhile: ~10 ms of GIL on a quiet machine here
#: (a middle collection of about a million took 160 ms; docs/dataplane.md, Scale).
MOST_EXAMINED = 60_000


@pytest.fixture
def tuned() -> Iterator[list[tuple[int, int]]]:
    """The daemon's thresholds for the test's body; yields (generation, objects examined) of
    every collection meanwhile."""
    before = gc.get_threshold()
    examined: list[tuple[int, int]] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            generation = info["generation"]
            examined.append(
                (generation, sum(len(gc.get_objects(g)) for g in range(generation + 1)))
            )

    gc.collect()
    gc_tuning.configure()
    gc.callbacks.append(count)
    try:
        yield examined
    finally:
        gc.callbacks.remove(count)
        gc.set_threshold(*before)


def test_no_collection_examines_more_than_the_young_bound_while_a_pass_keeps_a_million(
    tuned: list[tuple[int, int]],
) -> None:
    kept = [[i] for i in range(PASS_KEEPS)]  # tracked, and alive until the end, as a pass's
    assert len(kept) == PASS_KEEPS
    assert {generation for generation, _ in tuned} == {0, 1}, "young and middle, never full"
    largest = max(count for _, count in tuned)
    assert largest <= MOST_EXAMINED, f"a collection examined {largest} objects"


def test_after_the_first_pass_the_heap_is_frozen_once_and_young_cycles_are_collected_first(
    tuned: list[tuple[int, int]],
) -> None:
    passes = 0
    freezer = gc_tuning.HeapFreezer(lambda: passes)
    kept = [[i] for i in range(200_000)]

    class Cycle:
        me: object

    garbage = Cycle()
    garbage.me = garbage
    gone = weakref.ref(garbage)
    del garbage
    frozen_before = gc.get_freeze_count()
    assert not freezer.tick(), "no pass yet"
    assert gc.get_freeze_count() == frozen_before
    passes = 1
    try:
        assert freezer.tick()
        assert gone() is None, "a young reference cycle was collected, not frozen"
        assert gc.get_freeze_count() >= frozen_before + len(kept)
        left = sum(len(gc.get_objects(g)) for g in range(3))
        assert left < 1_000, f"a full collection would still examine {left} objects"
        passes = 2
        assert not freezer.tick(), "frozen once: a later pass does not freeze again"
    finally:
        gc.unfreeze()
