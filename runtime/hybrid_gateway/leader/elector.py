"""A small Lease elector: the pure decision table plus a loop that reads and writes the Lease.

Why not the client library's elector: it exits the process on bad config, cannot release the
lease on shutdown, and cannot be cancelled (docs/design.md#leader-election).

Leadership comes in terms. A term starts with a successful acquisition and ends when the lease
is lost, cannot be renewed within the renew deadline, or the elector shuts down; after
`shutdown()` no term starts again. Within a term, writes are allowed only while `valid()`:
until `renew_deadline` after the last successful renewal was SENT, on the monotonic clock. It
turns false by itself even if a renewal is still in flight (a slow API server): the term goes
on, and writes resume when that renewal succeeds.

Writes also pause, at once, when the Lease shows that it is no longer ours: a renewal answered
409 (changed since we wrote it; kube-apiserver's answer for a deleted Lease too, whose uid our
body carries as a precondition) or 404, or the Lease watch showing no Lease or another holder
(an admin deleting or editing it). They resume only after a read shows this replica as holder
and the renewal that follows succeeds; a read showing anyone else ends the term.

A follower backs off after a failed or refused round (at least a quarter retry period, with
jitter), and after a run of failed API calls its first good read is a fresh observation: the
holder it sees must then stay unchanged for a whole lease duration before it may take over, so
an API outage alone does not move the lease.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from hybrid_gateway.adapters.kube_lease import LeaseConflictError, LeaseGoneError
from hybrid_gateway.core.lease import (
    Action,
    LeaseRecord,
    Observation,
    decide,
    expires_at,
    leader_valid_until,
    next_round_in,
    observe,
    validate_timing,
    warrants_early_round,
)

log = logging.getLogger(__name__)

MIN_TIMEOUT_S = 0.05


class LeaseBackend(Protocol):
    def get(self, timeout_s: float) -> LeaseRecord | None: ...

    def write(
        self,
        previous: LeaseRecord | None,
        holder: str | None,
        lease_duration_s: float,
        timeout_s: float,
    ) -> LeaseRecord: ...


@dataclass(frozen=True)
class Term:
    """One continuous leadership. `valid()` is the write guard of THIS term: false for good
    once the term ended, even if a later term has started."""

    number: int
    acquired_at: float  # monotonic time the acquiring write was sent
    valid: Callable[[], bool]


class LeadershipCallbacks(Protocol):
    """Called from the elector's thread; implementations must return quickly."""

    def started_leading(self, term: Term) -> None: ...
    def stopped_leading(self) -> None: ...
    def new_leader(self, holder: str | None) -> None: ...


class NoCallbacks:
    def started_leading(self, term: Term) -> None:
        pass

    def stopped_leading(self) -> None:
        pass

    def new_leader(self, holder: str | None) -> None:
        pass


class LeaseElector:
    def __init__(
        self,
        backend: LeaseBackend,
        *,
        identity: str,
        lease_duration_s: float,
        renew_deadline_s: float,
        retry_period_s: float,
        clock: Callable[[], float] = time.monotonic,
        callbacks: LeadershipCallbacks | None = None,
        can_acquire: Callable[[], bool] = lambda: True,
        follow_poll_s: float | None = None,
        log_refusals: bool = True,
        rng: Callable[[], float] = random.random,
        on_pause: Callable[[str], None] = lambda _message: None,
    ) -> None:
        # Timings that break the election's safety are refused when the elector is made, as
        # client-go's NewLeaderElector refuses them (k8s.io/client-go/tools/leaderelection/
        # leaderelection.go: leaseDuration > renewDeadline > JitterFactor * retryPeriod). Its
        # JitterFactor (1.2) covers the jittered retry of its acquire loop; here the holder
        # renews every retry period without jitter, so the rule is retry < renew deadline.
        validate_timing(lease_duration_s, renew_deadline_s, retry_period_s)
        self._backend = backend
        self.identity = identity
        self._duration = lease_duration_s
        self._deadline = renew_deadline_s
        self._retry = retry_period_s
        self._clock = clock
        self._callbacks: LeadershipCallbacks = callbacks or NoCallbacks()
        self._can_acquire = can_acquire
        # A follower re-reads the Lease this often (default: every retry period); a group
        # that watches its Leases polls less, since the watch wakes it on every change.
        self._follow_poll = follow_poll_s if follow_poll_s is not None else retry_period_s
        self._handover: Callable[[float], bool] | None = None  # set by request_handover
        self._letting_expire = False  # a hand-over could not release: do not renew
        self._log_refusals = log_refusals
        self._lock = threading.Lock()
        self._observation: Observation | None = None
        self._valid_until = 0.0
        self._leading = False
        self._closed = False
        self._term = 0
        self._last_renew_sent: float | None = None
        self._last_round_failed = False
        self._refusal_logged = False
        self._rng = rng  # the jitter of a follower's back-off
        self._on_pause = on_pause  # told (with the reason) each time leader writes pause
        # A call of the last round(s) failed (not a conflict): the next good read is a fresh
        # observation, whatever was seen before the outage.
        self._api_failing = False
        # Bumped when writes pause (the Lease shows it is not ours): a renewal already in
        # flight then cannot resume them; only a round started after the pause can.
        self._pause_epoch = 0
        self._paused_at: float | None = None
        # The other holder's record our acquisition replaced: the watch may still deliver it
        # after we won, and it must not pause the term it ended.
        self._replaced_rv: str | None = None
        self.pauses = 0  # times writes paused because the Lease showed it was not ours
        self._wake = threading.Event()
        self.heartbeat = clock()
        self.holder: str | None = None  # last holder seen

    # -- queried by leader work ---------------------------------------------------------------
    def valid(self) -> bool:
        """True while this replica may act as leader (checked before every leader write)."""
        with self._lock:
            return self._leading and self._paused_at is None and self._clock() < self._valid_until

    def valid_for(self) -> float:
        with self._lock:
            if not self._leading or self._paused_at is not None:
                return 0.0
            return max(0.0, self._valid_until - self._clock())

    @property
    def leading(self) -> bool:
        """A term is running (writes may still be paused while a renewal is in flight)."""
        return self._leading

    def _term_valid(self, number: int) -> bool:
        with self._lock:
            return (
                self._leading
                and self._term == number
                and not self._closed
                and self._paused_at is None
                and self._clock() < self._valid_until
            )

    # -- the loop ------------------------------------------------------------------------------
    def notice(self, seen: LeaseRecord | None) -> None:
        """A Lease state seen on the watch (called from the watch thread).

        A follower remembers when it saw another holder's renewal, on its own clock, so that
        its round is due when THAT lease expires (`next_round_in`), not up to a poll period
        later; a release, deletion or new holder starts the next round now.
        """
        early = warrants_early_round(self._observation, seen)
        paused = None
        with self._lock:
            if self._leading:
                if self._contradicts_term(seen):
                    why = "deleted" if seen is None else f"held by {seen.holder or 'nobody'}"
                    paused = self._pause_locked(why)
                    early = True
            elif seen is not None and seen.holder != self.identity:
                previous = None if self._api_failing else self._observation
                self._observation = observe(previous, seen, self._clock())
        self._report_pause(paused)
        if early:
            self._wake.set()

    def _shut_down(self) -> bool:
        """`shutdown()` was called: checked right before every request, since a round may
        have passed its first check before the signal came."""
        with self._lock:
            return self._closed

    def _contradicts_term(self, seen: LeaseRecord | None) -> bool:
        """A watched Lease state that says our term is over (lock held, leading)."""
        if seen is None:
            return True
        return seen.holder != self.identity and seen.resource_version != self._replaced_rv

    def _pause_locked(self, why: str) -> str | None:
        """Stop leader writes now (lock held) and re-read the Lease in the next round. Returns
        the message to report (`_report_pause`, outside the lock) if writes were running."""
        self._pause_epoch += 1
        self._observation = None  # the next round reads the Lease
        if self._paused_at is not None:
            return None
        self._paused_at = self._clock()  # `valid()` is false from now on
        self.pauses += 1
        return f"the Lease is {why}: leader writes paused until a read shows this replica as holder"

    def _report_pause(self, message: str | None) -> None:
        if message is None:
            return
        log.warning("%s", message)
        try:
            self._on_pause(message)
        except Exception:  # reporting must not break the elector
            log.exception("reporting a paused term failed")

    @property
    def paused(self) -> bool:
        """Leader writes are paused because the Lease showed it is not ours."""
        with self._lock:
            return self._paused_at is not None

    def wake(self) -> None:
        """End the current wait at once (a Lease change, or shutdown)."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """Rounds until `stop`, each when `next_round_in` says or earlier when woken; polling
        stays the safety net for a watch that is down or missed an event."""
        while not stop.is_set() and not self._closed:
            self._wake.clear()
            self.try_once()
            self.heartbeat = self._clock()
            if not stop.is_set():
                self._wake.wait(self.next_round_in())
        self._set_leading(False)

    def next_round_in(self) -> float:
        with self._lock:
            leading = self._leading
        if self._handover is not None:
            return 0.0
        return next_round_in(
            now=self._clock(),
            retry_period_s=self._retry if leading else self._follow_poll,
            leading=leading,
            last_renew_sent=self._last_renew_sent,
            last_round_failed=self._last_round_failed,
            lease_expires_at=expires_at(self._observation, self.identity),
            jitter=self._rng(),
            backoff_period_s=self._retry,
        )

    def try_once(self) -> None:
        """One read/decide/write round; never raises."""
        if self._closed:
            return
        if self._handover is not None:
            self._hand_over(self._handover)
            return
        self._last_round_failed = False
        with self._lock:
            epoch = self._pause_epoch
        try:
            observation = self._observation
            if not (self._leading and observation and observation.record.holder == self.identity):
                if self._shut_down():
                    return
                record = self._backend.get(max(MIN_TIMEOUT_S, self._deadline))
                # after failed calls, what was observed before the outage does not count
                known = None if self._api_failing else self._observation
                self._api_failing = False
                observation = observe(known, record, self._clock()) if record else None
                self._observation = observation
                self._see_holder(record.holder if record else None)
            action = decide(observation, self.identity, self._clock())
            if action is Action.RENEW and not self._leading and self._letting_expire:
                action = Action.FOLLOW  # handed over but not released: it runs out by itself
            elif observation is None or observation.record.holder != self.identity:
                self._letting_expire = False
            if action is Action.FOLLOW:
                if self._leading:
                    log.warning("the Lease is held by %s: ending the term", self.holder)
                self._set_leading(False)
                return
            # Renewing a lease we hold but do not lead on (a restart under the same identity)
            # starts a term just like acquiring one: it passes the same gate.
            starting = action is Action.ACQUIRE or not self._leading
            if starting and not self._can_acquire():
                if not self._refusal_logged and self._log_refusals:
                    log.warning("lease is free but this replica is not ready: not acquiring")
                    self._refusal_logged = True
                self._last_round_failed = True  # refused: back off like a failed round
                self._set_leading(False)
                return
            self._refusal_logged = False
            previous = observation.record if observation else None
            if self._shut_down():  # shut down while this round read: nothing is sent after it
                return
            sent = self._clock()  # the server stores the write no earlier than this
            written = self._backend.write(
                previous, self.identity, self._duration, self._write_timeout(action, sent)
            )
        except Exception as exc:  # conflicts, timeouts, partitions
            # A conflict means the Lease changed since we read it: re-read next round. Other
            # errors retry the write at the same version (if a timed-out write landed after
            # all, that retry conflicts and re-reads). Either way a holder keeps its term, with
            # writes allowed only until its validity ends (others cannot take the lease
            # before that); it stops leading once that passed without a renewal.
            # A 409 or 404 on a renewal means the Lease is no longer the one we hold: writes
            # pause at once (not when the validity runs out) until a read shows us as holder.
            self._last_round_failed = True
            if isinstance(exc, LeaseConflictError | LeaseGoneError):
                paused = None
                with self._lock:
                    if self._leading:
                        paused = self._pause_locked("changed or deleted (the renewal was refused)")
                    self._observation = None
                self._report_pause(paused)
            else:
                self._api_failing = True
            log.debug("lease round failed: %s", exc)
            if self._leading and self._clock() >= self._valid_until:
                if self.paused:
                    log.warning("the Lease could not be read back after it changed: %s", exc)
                else:
                    log.warning("could not renew the lease within the renew deadline: %s", exc)
                self._set_leading(False)
            return
        with self._lock:
            if written.holder != self.identity or epoch != self._pause_epoch:
                # paused while this write was in flight: the next round reads the Lease again
                self._observation = None
                self._last_round_failed = True
                return
            if action is Action.ACQUIRE and previous is not None and previous.holder:
                self._replaced_rv = previous.resource_version
            self._observation = Observation(written, self._clock())
            self._valid_until = leader_valid_until(sent, self._deadline)
            resumed = self._paused_at is not None and self._leading
            self._paused_at = None
        if resumed:
            log.info("the Lease shows this replica as holder again: leader writes resume")
        self._see_holder(written.holder)
        self._last_renew_sent = sent
        self._set_leading(True, acquired_at=sent)

    def _write_timeout(self, action: Action, sent: float) -> float:
        """How long to wait for the answer to a write sent at `sent`.

        Any write is worth its answer while that answer can still make the leader valid: until
        `sent` plus the renew deadline (a success after that grants no time). A renewal also
        waits until others could take the lease (our last renewal's send time plus the lease
        duration), when that is later. Neither bound weakens fencing: a renewal that succeeds
        late still grants validity only until its SEND time plus the renew deadline, and one
        that lands after another replica took the lease conflicts (it carries the version we
        read). Under API latency between half the lease duration and the renew deadline,
        renewals go back to back and the second bound alone would be shorter than one round
        trip: every renewal would time out and the leader would give up a lease it holds."""
        if action is Action.RENEW and self._leading and self._last_renew_sent is not None:
            return max(MIN_TIMEOUT_S, self._deadline, self._last_renew_sent + self._duration - sent)
        return max(MIN_TIMEOUT_S, self._deadline)

    def request_handover(self, wait_idle: Callable[[float], bool]) -> None:
        """Give the lease up for balancing, from the elector's own thread (no renewal can race
        the release): end the term, wait until `wait_idle(timeout)` says no write of the term
        is in flight, then release. The caller's `can_acquire` must refuse it afterwards."""
        self._handover = wait_idle
        self._wake.set()

    def _hand_over(self, wait_idle: Callable[[float], bool]) -> None:
        self._handover = None
        if not self._leading:
            return
        self._set_leading(False)  # writes of the term stop passing their guard now
        if not wait_idle(self._deadline):
            self._letting_expire = True
            log.warning(
                "writes still in flight after %.1fs: letting the lease expire", self._deadline
            )
            return
        observation = self._observation
        if observation is None or observation.record.holder != self.identity or self._closed:
            return
        try:
            written = self._backend.write(
                observation.record, None, self._duration, max(MIN_TIMEOUT_S, self._deadline)
            )
        except Exception as exc:  # it expires by itself; others take it then
            self._letting_expire = True
            log.warning("could not hand the lease over: %s", exc)
            return
        self._observation = observe(self._observation, written, self._clock())
        self._see_holder(None)
        log.info("handed the lease over")

    def shutdown(self) -> None:
        """End the term at once and for good: no write passes and no term starts after this."""
        with self._lock:
            self._closed = True
        self._set_leading(False)

    def release(self, timeout_s: float = 2.0) -> bool:
        """Give the lease up (holder emptied) so a standby can take it at once.

        Call only after leader work has stopped. Written at the last observed resourceVersion:
        if anyone else wrote since, the write conflicts and nothing is released.
        """
        self.shutdown()
        observation = self._observation
        if observation is None or observation.record.holder != self.identity:
            return False
        try:
            self._backend.write(observation.record, None, self._duration, timeout_s)
        except Exception as exc:
            log.warning("could not release the lease: %s", exc)
            return False
        log.info("released the lease")
        return True

    def _see_holder(self, holder: str | None) -> None:
        if holder != self.holder:
            self.holder = holder
            self._callbacks.new_leader(holder)

    def _set_leading(self, leading: bool, acquired_at: float = 0.0) -> None:
        with self._lock:
            if leading and self._closed:
                return  # a renewal that completed after shutdown: the term stays over
            changed = leading != self._leading
            self._leading = leading
            if not leading:
                self._valid_until = 0.0
                self._paused_at = None
            if changed and leading:
                self._term += 1
            term = Term(self._term, acquired_at, self._valid_of(self._term))
        if not changed:
            return
        log.info("%s leadership (identity %s)", "acquired" if leading else "lost", self.identity)
        if leading:
            self._callbacks.started_leading(term)
        else:
            self._callbacks.stopped_leading()

    def _valid_of(self, number: int) -> Callable[[], bool]:
        return lambda: self._term_valid(number)
