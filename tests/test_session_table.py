"""The base station's session table (unitocom.stages.session) in process, with real threads and real time (short
waits): parts matched by id and modality, the task run once, deadlines, the bound, expiry and the refusals. The
services' side (two transmitters, the CLI, statuses, metrics) is tests/test_sessions.py."""
from __future__ import annotations

import threading
import time

import pytest

from unitocom.config import SessionLimits
from unitocom.messages import Modality, RequestHeader, Session
from unitocom.options import Task
from unitocom.stages.request import RequestError
from unitocom.stages.session import Outcome, Part, SessionTable

IMAGE, TEXT = Modality.IMAGE, Modality.TEXT
VQA = (TEXT, IMAGE)  # in Modality order, as validate_session returns them


def header(request_id: str, sid: str = "s1", task: Task = Task.VQA, partial: bool = False,
           wait_s: float = 0.0) -> RequestHeader:
    return RequestHeader(request_id=request_id, task=task, session=Session(sid, [], partial, wait_s))


class Events(list):
    def __call__(self, event: str) -> None:
        self.append(event)


def join(table: SessionTable, h: RequestHeader, *modalities: Modality, expected=VQA):
    return table.join(h, expected, Part(h.request_id, h, modalities, decoded=f"decoded {h.request_id}"))


def answer_of(table: SessionTable, turn):
    """What the base station does for the call that must run the task: here, the 'task' names the parts it read."""
    parts, missing = table.parts(turn)
    outcome = Outcome(value=("answer", tuple(p.decoded for p in parts)), missing=missing, answered_by=turn.request_id)
    table.publish(turn, outcome)
    return outcome


def waiter(table: SessionTable, turn, timeout_s=10.0):
    """Run a waiting part's call in a thread; its share of the outcome (or its error) lands in the returned dict."""
    got: dict = {}

    def run():
        try:
            outcome, got["waited"] = table.await_outcome(turn, timeout_s)
            if outcome is None:
                outcome = answer_of(table, turn)
            got["value"] = table.take(turn, outcome)
        except RequestError as e:
            got["error"] = e
    t = threading.Thread(target=run)
    t.start()
    return t, got


def test_two_parts_are_answered_once_with_the_same_answer():
    events = Events()
    table = SessionTable(SessionLimits(), events)
    first = join(table, header("camera"), IMAGE)
    assert not first.run and table.open_count == 1
    t, got = waiter(table, first)
    time.sleep(0.3)
    assert t.is_alive()  # waits for the question
    second = join(table, header("phone"), TEXT)
    assert second.run  # the part that completes the session runs the task, once
    mine = table.take(second, answer_of(table, second))
    t.join(5)
    assert got["value"] == mine == ("answer", ("decoded camera", "decoded phone"))
    assert got["waited"] >= 0.3
    assert events == ["opened", "completed"] and table.open_count == 0


def test_a_missing_part_is_deadline_exceeded_naming_it_and_the_id_is_closed():
    events = Events()
    table = SessionTable(SessionLimits(), events)
    t0 = time.monotonic()
    t, got = waiter(table, join(table, header("camera", wait_s=0.5), IMAGE))
    t.join(5)
    assert 0.45 <= time.monotonic() - t0 < 3
    e = got["error"]
    assert e.code == "deadline_exceeded" and "no text part arrived within 0.5 s (arrived: image)" in str(e)
    assert events == ["opened", "expired"] and table.open_count == 0
    with pytest.raises(RequestError, match=r"already ended .* \(expired without text\); a new request needs a new id") as e:
        join(table, header("phone"), TEXT)
    assert e.value.code == "failed_precondition"


def test_a_partial_answer_goes_to_the_parts_that_asked_for_it():
    """Three parts awaited, one never comes: the part that asked for a partial answer gets the answer made of what
    arrived; the one that did not gets DEADLINE_EXCEEDED; the task ran once."""
    events = Events()
    table = SessionTable(SessionLimits(), events)
    every = (Modality.TEXT, Modality.IMAGE, Modality.AUDIO)
    t1, got1 = waiter(table, join(table, header("a", task=Task.RECONSTRUCT, wait_s=0.4, partial=True), IMAGE,
                                  expected=every))
    t2, got2 = waiter(table, join(table, header("b", task=Task.RECONSTRUCT), TEXT, expected=every))
    t1.join(5), t2.join(5)
    assert got1["value"] == ("answer", ("decoded a", "decoded b"))
    assert got2["error"].code == "deadline_exceeded" and "no audio part arrived" in str(got2["error"])
    assert events == ["opened", "partial"]


def test_the_table_is_bounded_and_frees_itself_at_the_deadlines():
    events = Events()
    table = SessionTable(SessionLimits(max_open=2), events)
    turns = [join(table, header(f"r{i}", sid=f"s{i}", wait_s=0.4), IMAGE) for i in range(2)]
    with pytest.raises(RequestError, match=r"session table is full \(2 sessions open, the limit\)") as e:
        join(table, header("r2", sid="s2"), IMAGE)
    assert e.value.code == "resource_exhausted" and table.open_count == 2
    for turn in turns:  # their callers leave at their own (shorter) deadlines: nobody waits on the sessions now
        with pytest.raises(RequestError, match="this call's deadline passed"):
            table.await_outcome(turn, timeout_s=0.05)
    assert table.open_count == 2
    time.sleep(0.5)  # past the sessions' deadlines: the sweep ends them
    table.sweep()
    assert table.open_count == 0 and events.count("expired") == 2 and events.count("rejected") == 1
    assert not join(table, header("r3", sid="s3"), IMAGE).run  # room again
    for turn in turns:
        with pytest.raises(RequestError, match="no text part arrived"):
            table.take(turn, turn.session.outcome)


def test_a_call_whose_own_deadline_comes_first_leaves_and_the_session_waits_on():
    table = SessionTable(SessionLimits())
    first = join(table, header("camera", wait_s=5.0), IMAGE)
    with pytest.raises(RequestError, match="this call's deadline passed .* stays open") as e:
        table.await_outcome(first, timeout_s=0.2)
    assert e.value.code == "deadline_exceeded" and table.open_count == 1
    second = join(table, header("phone"), TEXT)  # the camera's part is still there: the phone's call completes it
    assert second.run and table.take(second, answer_of(table, second))[1] == ("decoded camera", "decoded phone")


def test_a_cancelled_caller_stops_waiting():
    table = SessionTable(SessionLimits())
    turn = join(table, header("camera"), IMAGE)
    t0 = time.monotonic()
    with pytest.raises(RequestError, match="cancelled by the caller") as e:
        table.await_outcome(turn, timeout_s=10, alive=lambda: time.monotonic() - t0 < 0.3)
    assert e.value.code == "cancelled" and time.monotonic() - t0 < 2


@pytest.mark.parametrize("second, match", [
    (header("phone", task=Task.T2I), "is a vqa session .* this part asks for t2i"),
    (header("camera2"), r"already has its image part \(from request camera\)"),
])
def test_conflicting_parts_are_failed_precondition(second, match):
    table = SessionTable(SessionLimits())
    join(table, header("camera"), IMAGE)
    with pytest.raises(RequestError, match=match) as e:
        table.check(second, (TEXT,) if second.task == Task.T2I else VQA, (IMAGE,))
    assert e.value.code == "failed_precondition"
    with pytest.raises(RequestError, match="waits for text, image; this part names text, image, audio"):
        table.check(header("phone"), (TEXT, IMAGE, Modality.AUDIO), (TEXT,))


def test_a_retried_part_takes_its_own_place():
    """A hop's retry sends the same part again under the same request id: not a second image."""
    table = SessionTable(SessionLimits())
    join(table, header("camera"), IMAGE)
    again = join(table, header("camera"), IMAGE)
    assert not again.run and len(table.parts(again)[0]) == 1
