"""The pure parts of the numbered examples: the failure mailer's handler and the app
factory's settings. Their I/O (broker, cluster) is exercised by
tests/integration/test_examples.py."""

from __future__ import annotations

import pytest

from lime_task.events import TaskEvent
from tests.example_modules import EXAMPLES, load_example as load

mailer_module = load(EXAMPLES / "02-failure-mailer" / "failure_mailer.py", "example_failure_mailer_unit")
app_module = load(EXAMPLES / "03-app-factory" / "factory_demo" / "app.py", "example_factory_app_unit")


def failure(message_id="uid-1.failure", error=None, reason="TaskRaised") -> TaskEvent:
    return TaskEvent(task_id="t-1", task_name="pkg.tasks.report", app="billing", state="FAILURE",
                     reason=reason, attempts=2, message_id=message_id,
                     error=error if error is not None else {"type": "KeyError", "message": "'company'\nmore"})


def test_mail_line_names_task_app_id_reason_and_first_line_of_the_error():
    assert mailer_module.mail_line(failure(), "ops@example.com") == (
        "To: ops@example.com | Subject: task pkg.tasks.report failed for app billing "
        "(task t-1, reason TaskRaised, attempts 2): KeyError: 'company'"
    )


def test_mail_line_without_error_details_falls_back_to_the_reason():
    line = mailer_module.mail_line(failure(error={}, reason="DeadlineExceeded"), "a@b")
    assert line.endswith("): DeadlineExceeded")


def test_a_duplicate_message_id_is_mailed_once():
    sent = []
    mailer = mailer_module.FailureMailer(send=sent.append)
    mailer(failure())
    mailer(failure())
    mailer(failure(message_id="uid-2.failure"))
    assert len(sent) == 2


def test_a_mail_that_failed_to_send_is_not_taken_for_a_duplicate_on_replay():
    attempts = []

    def flaky(line):
        attempts.append(line)
        if len(attempts) == 1:
            raise ConnectionRefusedError("smtp down")

    mailer = mailer_module.FailureMailer(send=flaky)
    with pytest.raises(ConnectionRefusedError):
        mailer(failure())
    mailer(failure())  # the dead-lettered message, replayed
    assert len(attempts) == 2


def test_the_mailer_remembers_a_bounded_number_of_ids():
    sent = []
    mailer = mailer_module.FailureMailer(send=sent.append, remember=2)
    for message_id in ("a", "b", "c", "a"):
        mailer(failure(message_id=message_id))
    assert len(sent) == 4  # "a" was forgotten after "c" arrived


def test_successes_are_never_mailed():
    sent = []
    mailer_module.FailureMailer(send=sent.append)(
        TaskEvent(task_id="t", task_name="pkg.t", app="a", state="SUCCESS", message_id="u.success"))
    assert sent == []


def test_factory_settings_default_and_override():
    assert app_module.load_settings(None) == {"currency": "SEK", "environment": "development"}
    assert app_module.load_settings('{"currency": "EUR"}') == {"currency": "EUR", "environment": "development"}


@pytest.mark.parametrize("raw, problem", [("{", "not valid JSON"), ("[1]", "must be a JSON object")])
def test_factory_settings_errors_name_the_variable(raw, problem):
    with pytest.raises(app_module.SettingsError, match="FACTORY_DEMO_SETTINGS") as caught:
        app_module.load_settings(raw)
    assert problem in str(caught.value)
