"""Which Jobs and pods belong to a task (lime_task.children): the label selects a
superset, the full-name annotation decides."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lime_task.children import ANNOTATION_TASK_NAME, belongs_to, task_label
from lime_task.constants import LABEL_TASK_ID

# LimeTask names: DNS subdomains, up to 253 characters.
names = st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", fullmatch=True)


def made_for(name: str) -> dict:
    """The metadata the operator puts on a task's Job and pods (jobs.build_job)."""
    return {"labels": {LABEL_TASK_ID: task_label(name)}, "annotations": {ANNOTATION_TASK_NAME: name}}


@given(names)
def test_a_label_is_a_valid_label_value_and_a_child_belongs_to_its_task(name):
    label = task_label(name)
    assert len(label) <= 63 and label[:1].isalnum() and label[-1:].isalnum()
    assert belongs_to(made_for(name), name)


@given(names)
def test_the_task_named_like_a_long_names_label_does_not_take_its_children(name):
    """The cut of a long name is itself a valid name; a task so named shares the label
    but never the children, in either direction."""
    other = task_label(name)
    if other == name:
        return
    assert task_label(other) == task_label(name)  # the same selector finds both...
    assert not belongs_to(made_for(name), other)  # ...but each keeps its own
    assert not belongs_to(made_for(other), name)


def test_children_made_before_the_annotation_belong_by_their_label_only_if_it_is_the_name():
    assert belongs_to({"labels": {LABEL_TASK_ID: "t1"}}, "t1")
    assert not belongs_to({"labels": {LABEL_TASK_ID: "t1"}}, "t2")
    assert not belongs_to({}, "t1")
    # The annotation decides, even against the label.
    assert not belongs_to({"labels": {LABEL_TASK_ID: "t1"}, "annotations": {ANNOTATION_TASK_NAME: "t9"}}, "t1")
