"""Admission under MAX_RUNNING / MAX_RUNNING_PER_APP (pure)."""

from lime_task_operator.admission import Entry, admit, queue_message


def waiting(key, app="a", order=None):
    return Entry(key=key, app=app, order=(order if order is not None else key,), running=False, waiting=True)


def running(key, app="a"):
    return Entry(key=key, app=app, order=(0,), running=True, waiting=False)


def test_unlimited_admits_every_waiting_task_in_creation_order():
    entries = [waiting("c", order=3), waiting("a", order=1), waiting("b", order=2), running("r")]
    assert admit(entries, 0, 0) == ["a", "b", "c"]


def test_global_limit_counts_running_tasks():
    entries = [running("r1"), waiting("w1", order=1), waiting("w2", order=2), waiting("w3", order=3)]
    assert admit(entries, 3, 0) == ["w1", "w2"]
    assert admit(entries, 1, 0) == []


def test_per_app_limit_skips_a_full_app_without_blocking_others():
    entries = [
        running("a1", app="a"),
        waiting("a2", app="a", order=1),
        waiting("b1", app="b", order=2),
        waiting("b2", app="b", order=3),
    ]
    assert admit(entries, 0, 1) == ["b1"]


def test_both_limits_together_keep_order_within_an_app():
    entries = [
        waiting("a1", app="a", order=1),
        waiting("a2", app="a", order=2),
        waiting("b1", app="b", order=3),
        waiting("a3", app="a", order=4),
    ]
    assert admit(entries, 3, 2) == ["a1", "a2", "b1"]


def test_nothing_waiting_admits_nothing():
    assert admit([running("r")], 5, 5) == []
    assert admit([], 1, 1) == []


def test_queue_message_names_the_limits():
    assert queue_message(2, 0, "a") == "waiting for a free slot (MAX_RUNNING=2)"
    message = queue_message(2, 1, "billing")
    assert "MAX_RUNNING=2" in message and "MAX_RUNNING_PER_APP=1 for app 'billing'" in message
