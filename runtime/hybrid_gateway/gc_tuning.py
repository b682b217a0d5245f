"""The cycle collector, tuned for the daemon's long-lived data.

A collection holds the GIL from start to end, so `/readyz` and `/metrics` wait for it. CPython
3.11's collector (the image's interpreter; Modules/gcmodule.c `collect_generations`) examines
every object of the generations it collects: the youngest after `threshold0` more tracked objects
than were freed, the middle one (with the youngest) after `threshold1` of those, everything after
`threshold2` middle ones, and only once a quarter more objects reached the oldest generation since
the last full collection. At 50,000 hybrid nodes the data plane keeps about a million tracked
objects (records, desired state, proof keys; measured with `gc.get_objects()`), all created by the
first list and pass. Measured during that pass with the thresholds before these (50,000, 20,
100): middle collections of up to a million young survivors took 160-640 ms, and probes waited
for them (a `/readyz` of 149 ms ended with a 162 ms collection, one of 611 ms with a 638 ms
one; gc.callbacks timed in the daemon); a full collection of the whole heap took 0.3-0.7 s.

So:
- the young generations stay small: a middle collection examines at most the survivors of
  threshold1 + 1 young collections and the youngest generation, (threshold1 + 2) x threshold0 =
  50,000 objects, however much the pass keeps (about 8 ms at the 160 ns per object that a
  collection of a million took on a quiet machine here). The collector's total work does not
  change: each surviving object is examined once in each young generation whatever the
  thresholds;
- full collections stay rare (one per 100,000,000 net allocations, as rare as before), and
- after the first full pass, what survives is frozen (`gc.freeze`): moved out of the
  generations the collector examines, so a later full collection examines only what came after.
  Just before, the young generations are collected, so cyclic garbage does not get frozen with
  them; frozen objects are still freed as usual when nothing refers to them any more (replaced
  records, an old desired state). A reference cycle alive at the freeze that becomes garbage
  later is never collected, which is why the heap is frozen once, when the first list and pass
  have built the bulk of it, and not after every pass: once bounds that leak to what was alive
  at one moment, every pass would let it grow with the daemon's uptime.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

#: (threshold0, threshold1, threshold2); CPython's defaults are (700, 10, 10).
GC_THRESHOLDS = (10_000, 3, 2_500)


def configure() -> None:
    """Set the daemon's thresholds (once, at start)."""
    gc.set_threshold(*GC_THRESHOLDS)


class HeapFreezer:
    """Freezes the heap once, after the first full reconcile pass (`passes` counts them)."""

    def __init__(self, passes: Callable[[], int]) -> None:
        self._passes = passes
        self._frozen = False

    def tick(self) -> bool:
        """Freeze if the first full pass has completed and the heap is not frozen yet; True if
        this call froze it."""
        if self._frozen or self._passes() == 0:
            return False
        self._frozen = True
        gc.collect(1)  # the young generations only: bounded by GC_THRESHOLDS
        gc.freeze()
        return True
