"""Sessions: one request assembled from parts that several devices send under one id (issue 17).

A camera sends the image and a phone the question, each through its own transmitter, channel draw and scheme, each
part in its own call. The base station decodes each part as it arrives (its own link settings) and hands it to the
`SessionTable`: parts are matched by session id and by modality (a session waits for a set of modalities; each
arrives once). The call whose part completes the session runs the task once, for everybody (`join` tells it so);
the other parts' calls wait in `await_outcome` and receive the same outcome. Each waiting call wakes when the
outcome is published, when the session's deadline passes, or when its own call's deadline or cancellation comes.

At the session's deadline (set by the part that opened it: its wait_s, or the service's default), with parts still
missing, the first waiting call to wake expires it: when some waiting part asked for a partial answer, that call
runs the task on what arrived (the table says which modalities are missing, the caller stands in for them) and
those parts get the answer with a note; the others get DEADLINE_EXCEEDED naming the missing parts. A session whose
callers have all gone (their own deadlines were shorter) is removed by `sweep` at its deadline.

Bounds (config.SessionLimits): at most `max_open` sessions at once (one more: RESOURCE_EXHAUSTED), each open at most
its wait, ids of closed sessions remembered for a while (a late or repeated part is refused naming what happened,
rather than opening a session that waits in vain). Nothing here knows gRPC or the models: errors are RequestErrors
with the status to answer, the task is the caller's `run` function, and events go to an observer (the service's
Prometheus counters).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from unitocom.config import SessionLimits
from unitocom.messages import Modality, RequestHeader, Session
from unitocom.options import Task
from unitocom.stages.request import RequestError

# What the observer hears, once per session except "rejected" (a part refused because the table was full).
EVENTS = ("opened", "completed", "partial", "expired", "failed", "rejected")
# A waiting call looks at its caller (cancelled?) at least this often.
POLL_S = 0.25


@dataclass
class Part:
    """One part as the base station received it: the call's request id and header, and what the caller decoded
    (opaque here: the table only keeps it for the call that runs the task)."""

    request_id: str
    header: RequestHeader
    modalities: tuple[Modality, ...]
    decoded: object = None


@dataclass
class Outcome:
    """What a session ended with: the answer (`value`, whatever `run` returned) for the parts that may take it, and
    `error` for the others (DEADLINE_EXCEEDED when parts were missing, or the task's own failure for all)."""

    value: object = None
    error: RequestError | None = None
    missing: tuple[Modality, ...] = ()
    answered_by: str = ""


@dataclass
class _Session:
    id: str
    task: Task | None
    expected: tuple[Modality, ...]
    opened_by: str
    opened: float
    wait_s: float
    deadline: float
    parts: list[Part] = field(default_factory=list)
    waiting: dict[int, bool] = field(default_factory=dict)  # waiting call (Turn.key) -> asked for a partial answer
    running: bool = False
    outcome: Outcome | None = None

    def arrived(self) -> dict[Modality, Part]:
        return {m: p for p in self.parts for m in p.modalities}

    def missing(self) -> tuple[Modality, ...]:
        have = self.arrived()
        return tuple(m for m in self.expected if m not in have)


@dataclass
class Turn:
    """What `join` tells the caller: `run` is True when its part completed the session, and it must run the task
    (`SessionTable.run`); otherwise it waits (`await_outcome`)."""

    session: _Session
    request_id: str
    partial: bool
    run: bool
    joined: float
    key: int = 0  # this call among the waiting ones (a retried part shares the request id of its first call)


class SessionTable:
    """The base station's open sessions, bounded (see the module's docstring). Thread-safe: every call's thread
    joins and waits here; one lock and one condition for the whole table (a handful of sessions, microseconds of
    work under the lock)."""

    def __init__(self, limits: SessionLimits, observer: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.limits, self.observer, self.clock = limits, observer, clock
        self._open: dict[str, _Session] = {}
        self._closed: OrderedDict[str, tuple[float, str]] = OrderedDict()  # id -> (when, what happened)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._turns = 0

    # -- what the service reads ------------------------------------------------------------------------------------

    @property
    def open_count(self) -> int:
        with self._cond:
            return len(self._open)

    # -- a part arrives -------------------------------------------------------------------------------------------

    def check(self, header: RequestHeader, expected: tuple[Modality, ...], modalities: tuple[Modality, ...]) -> None:
        """Refuse early, before the part's frames are read and decoded, what `join` would refuse now (a full table,
        a closed id, a conflict with the open session). `join` checks again: the table may change meanwhile."""
        with self._cond:
            self._sweep_locked(self.clock())
            self._admit_locked(header, expected, modalities)

    def join(self, header: RequestHeader, expected: tuple[Modality, ...], part: Part) -> Turn:
        """Add a decoded part to its session (opening it when it is the first). RequestError: the table is full
        (resource_exhausted), the id was closed, or the part conflicts with the session (failed_precondition)."""
        session: Session = header.session
        now = self.clock()
        with self._cond:
            self._sweep_locked(now)
            s = self._admit_locked(header, expected, part.modalities)
            if s is None:
                wait = session.wait_s or self.limits.default_wait_s
                s = _Session(session.id, header.task, expected, part.request_id, now, wait, now + wait)
                self._open[s.id] = s
                self._emit("opened")
            # a part sent again under the same request id (a hop's retry after a lost connection) takes its own place
            s.parts = [p for p in s.parts if p.request_id != part.request_id] + [part]
            run = not s.missing() and not s.running
            s.running |= run
            self._turns += 1
            turn = Turn(s, part.request_id, session.partial, run, now, self._turns)
            if not run:
                s.waiting[turn.key] = session.partial
            return turn

    def _admit_locked(self, header: RequestHeader, expected: tuple[Modality, ...],
                      modalities: tuple[Modality, ...]) -> _Session | None:
        """The open session this part joins (None: it opens one), or RequestError."""
        sid = header.session.id
        s = self._open.get(sid)
        if s is None:
            if sid in self._closed:
                when, what = self._closed[sid]
                raise RequestError("session.id", f"session {sid!r} already ended {self.clock() - when:.1f} s ago "
                                   f"({what}); a new request needs a new id", code="failed_precondition")
            if len(self._open) >= self.limits.max_open:
                self._emit("rejected")
                soonest = min(o.deadline for o in self._open.values()) - self.clock()
                raise RequestError("session", f"the base station's session table is full ({len(self._open)} sessions "
                                   f"open, the limit); try again when one is answered or expires (the next deadline "
                                   f"in {max(soonest, 0.0):.1f} s)", code="resource_exhausted")
            return None
        if s.running or s.outcome is not None:
            raise RequestError("session.id", f"session {sid!r} has all its parts and is being answered; a new request "
                               "needs a new id", code="failed_precondition")
        if header.task != s.task:
            raise RequestError("task", f"session {sid!r} is a {_task(s.task)} session (opened by request "
                               f"{s.opened_by}); this part asks for {_task(header.task)}", code="failed_precondition")
        if expected != s.expected:
            raise RequestError("session.parts", f"session {sid!r} waits for {_names(s.expected)}; this part names "
                               f"{_names(expected)}", code="failed_precondition")
        have = s.arrived()
        for m in modalities:
            if m in have and have[m].request_id != header.request_id:
                raise RequestError("session", f"session {sid!r} already has its {m.value} part (from request "
                                   f"{have[m].request_id}); a part for a modality already received is refused",
                                   code="failed_precondition")
        return s

    # -- the outcome ----------------------------------------------------------------------------------------------

    def parts(self, turn: Turn) -> tuple[list[Part], tuple[Modality, ...]]:
        """The parts the task runs on, in order of arrival, and the modalities missing (a partial answer)."""
        with self._cond:
            return list(turn.session.parts), turn.session.missing()

    def publish(self, turn: Turn, outcome: Outcome) -> None:
        """End the session with `outcome` (the call that ran the task, or expired it): every waiting call wakes and
        takes its share; the id is remembered as closed."""
        with self._cond:
            self._close_locked(turn.session, outcome)

    def _close_locked(self, s: _Session, outcome: Outcome) -> None:
        if s.outcome is not None:
            return
        s.outcome = outcome
        if outcome.error is not None and outcome.value is None:
            event = "failed" if outcome.error.code != "deadline_exceeded" else "expired"
        else:
            event = "partial" if outcome.missing else "completed"
        what = {"completed": "answered with every part", "partial": f"answered without {_names(outcome.missing)}",
                "expired": f"expired without {_names(outcome.missing)}", "failed": "failed"}[event]
        self._open.pop(s.id, None)
        self._closed[s.id] = (self.clock(), what)
        self._closed.move_to_end(s.id)
        while len(self._closed) > self.limits.closed_remembered:
            self._closed.popitem(last=False)
        self._emit(event)
        self._cond.notify_all()

    def await_outcome(self, turn: Turn, timeout_s: float | None, alive: Callable[[], bool] = lambda: True
                      ) -> tuple[Outcome | None, float]:
        """Wait for the session's outcome: (outcome, seconds waited), or (None, waited) when this call must run the
        task itself because the deadline passed with parts missing and a waiting part asked for a partial answer
        (then `parts` and `publish`). RequestError: this call's own deadline (`timeout_s`) passed first
        (deadline_exceeded; the session stays open for the other parts), or its caller cancelled (cancelled)."""
        s = turn.session
        own_end = None if timeout_s is None else turn.joined + max(timeout_s, 0.0)
        with self._cond:
            while True:
                now = self.clock()
                if s.outcome is not None:
                    s.waiting.pop(turn.key, None)
                    return s.outcome, now - turn.joined
                if not s.running and now >= s.deadline:
                    missing = s.missing()
                    if any(s.waiting.values()):  # a partial answer was asked for: this call computes it
                        s.running = True
                        s.waiting.pop(turn.key, None)
                        return None, now - turn.joined
                    self._close_locked(s, Outcome(error=self._expired_error(s, missing), missing=missing))
                    continue
                if own_end is not None and now >= own_end:
                    s.waiting.pop(turn.key, None)
                    raise RequestError("session", f"this call's deadline passed after {now - turn.joined:.1f} s while "
                                       f"session {s.id!r} waited for {_names(s.missing())}; the session stays open "
                                       f"for its other parts for {max(s.deadline - now, 0.0):.1f} s",
                                       code="deadline_exceeded")
                if not alive():
                    s.waiting.pop(turn.key, None)
                    raise RequestError("session", f"cancelled by the caller while session {s.id!r} waited for "
                                       f"{_names(s.missing())}", code="cancelled")
                wake = [s.deadline - now if not s.running else POLL_S, POLL_S]
                if own_end is not None:
                    wake.append(own_end - now)
                self._cond.wait(max(min(wake), 0.001))

    def _expired_error(self, s: _Session, missing: tuple[Modality, ...]) -> RequestError:
        got = _names(s.arrived()) or "nothing"
        return RequestError("session", f"session {s.id!r}: no {_names(missing)} part arrived within "
                            f"{s.wait_s:g} s (arrived: {got}); ask for session_partial to be answered "
                            "with what arrived", code="deadline_exceeded")

    def take(self, turn: Turn, outcome: Outcome):
        """This call's share of `outcome`: the answer when it completed the session or asked for a partial one,
        otherwise the error (raised)."""
        if outcome.value is not None and (not outcome.missing or turn.partial):
            return outcome.value
        if outcome.error is not None:
            raise outcome.error
        raise self._expired_error(turn.session, outcome.missing)

    # -- expiry -----------------------------------------------------------------------------------------------

    def sweep(self) -> None:
        """End the sessions whose deadline passed with nobody waiting (every caller gone at its own deadline), and
        forget closed ids older than closed_memory_s."""
        with self._cond:
            self._sweep_locked(self.clock())

    def _sweep_locked(self, now: float) -> None:
        for s in [s for s in self._open.values() if not s.running and not s.waiting and now >= s.deadline]:
            missing = s.missing()
            self._close_locked(s, Outcome(error=self._expired_error(s, missing), missing=missing))
        horizon = now - self.limits.closed_memory_s
        while self._closed and next(iter(self._closed.values()))[0] < horizon:
            self._closed.popitem(last=False)

    def start_sweeper(self) -> None:
        """A daemon thread that sweeps every sweep_interval_s, so that an abandoned session leaves the table (and
        the open-sessions gauge) at its deadline even when no other part ever comes."""
        if self._sweeper is None:
            self._sweeper = threading.Thread(target=self._sweep_loop, name="session-sweeper", daemon=True)
            self._sweeper.start()

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.limits.sweep_interval_s):
            self.sweep()

    def close(self) -> None:
        self._stop.set()

    def _emit(self, event: str) -> None:
        if self.observer is not None:
            self.observer(event)


def _names(modalities) -> str:
    return ", ".join(m.value for m in Modality if m in modalities)


def _task(task: Task | None) -> str:
    return task.value if task else "task_unspecified"
