"""What a user may type: value parsing, --kwarg, bounds, and the command-line shape."""

import argparse

import pytest

from lime_task import cli, cli_args, run_options
from lime_task.apps import FactoryLoadError, factory_from_env
from lime_task.cli_args import ExitCode
from lime_task.events import routing_key
from lime_task.models import LimeTaskSpec
from lime_task.tasks import TaskLoadError, load_task

# The argparse types of --timeout and --retries, derived from the run options' bounds.
TIMEOUT = cli_args.option_value(run_options.BY_NAME["timeout_seconds"])
RETRIES = cli_args.option_value(run_options.BY_NAME["retries"])


@pytest.mark.parametrize(
    "text, value",
    [
        ("1", 1),
        ("-2.5", -2.5),
        ("true", True),
        ("null", None),
        ("[1, 2]", [1, 2]),
        ('{"a": {"b": 1}}', {"a": {"b": 1}}),
        ('"1"', "1"),  # a quoted JSON string forces text
        ("hello", "hello"),
        ("", ""),
        ("[1, 2", "[1, 2"),  # invalid JSON stays text
        ("NaN", "NaN"),  # not JSON the API accepts: text, not a float nan
        ("Infinity", "Infinity"),
        ("[NaN]", "[NaN]"),
    ],
)
def test_parse_value_is_json_when_valid_else_text(text, value):
    assert cli_args.parse_value(text) == value
    assert type(cli_args.parse_value(text)) is type(value)


def test_parse_kwargs_parses_values_like_args():
    assert cli_args.parse_kwargs(["a=1", "b=x", "c=[1]", "d=a=b", "e="]) == {
        "a": 1, "b": "x", "c": [1], "d": "a=b", "e": "",
    }


@pytest.mark.parametrize(
    "item, message",
    [
        ("novalue", "is not NAME=VALUE"),
        ("1x=2", "is not a Python identifier"),
        ("my-key=2", "is not a Python identifier"),
        ("=2", "is not a Python identifier"),
    ],
)
def test_parse_kwargs_rejects_bad_items_naming_them(item, message):
    with pytest.raises(ValueError, match=message) as raised:
        cli_args.parse_kwargs([item])
    assert repr(item) in str(raised.value)


def test_parse_kwargs_rejects_a_repeated_name():
    with pytest.raises(ValueError, match="'a' is given twice"):
        cli_args.parse_kwargs(["a=1", "a=2"])


@pytest.mark.parametrize(
    "function, text, message",
    [
        (TIMEOUT, "0", "between 1 and 604800"),
        (TIMEOUT, "604801", "between 1 and 604800"),
        (TIMEOUT, "1.5", "whole number"),
        (RETRIES, "21", "between 0 and 20"),
        (RETRIES, "-1", "between 0 and 20"),
        (cli_args.wait_seconds, "0", "positive"),
        (cli_args.wait_seconds, "nan", "positive"),
        (cli_args.wait_seconds, "inf", "positive"),
        (cli_args.wait_seconds, "soon", "number of seconds"),
        (cli_args.positive_count, "0", "at least 1"),
        (cli_args.state, "DONE", "PENDING, STARTED, SUCCESS, FAILURE"),
    ],
)
def test_bounded_options_reject_out_of_range_values(function, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        function(text)


def test_bounded_options_accept_their_limits():
    assert TIMEOUT("604800") == 604800
    assert RETRIES("0") == 0
    assert cli_args.wait_seconds("0.5") == 0.5
    assert cli_args.state("failure") == "FAILURE"


def test_send_takes_arguments_before_and_after_options_in_order():
    options = cli.parse(["send", "pkg.tasks.add", "1", "--app", "my-app", "[2]", "x", "--kwarg", "k=true"])
    assert options.task == "pkg.tasks.add"
    assert options.app == "my-app"
    assert options.values == [1, [2], "x"]
    assert options.kwargs == {"k": True}
    assert options.wait is False and options.output == "text"


def test_send_takes_negative_numbers_as_arguments():
    options = cli.parse(["send", "pkg.tasks.add", "--app", "a", "-1", "-2.5"])
    assert options.values == [-1, -2.5]


def test_send_options_are_parsed_and_bounded():
    options = cli.parse(
        ["send", "p.t", "--app", "a", "--timeout", "60", "--retries", "2", "--wait", "--wait-timeout", "5", "-o", "json", "-n", "ns"]
    )
    assert (options.timeout, options.retries, options.wait, options.wait_timeout) == (60, 2, True, 5.0)
    assert (options.output, options.namespace) == ("json", "ns")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["send", "p.t"], "--app"),
        (["send", "p.t", "--app", "a", "--retries", "99"], "--retries must be between 0 and 20"),
        (["send", "p.t", "--app", "a", "--kwarg", "oops"], "'oops' is not NAME=VALUE"),
        (["send", "p.t", "--app", "a", "--bogus"], "unrecognized arguments: --bogus"),
        (["send", "p.t", "--app", "a", "--wait-timeout", "3"], "--wait-timeout needs --wait"),
        (["status", "id1"], "--app"),
        (["status", "id1", "--app", "a", "extra"], "unrecognized arguments: extra"),
        (["list", "--state", "DONE"], "state must be one of"),
        (["wait", "id1", "--app", "a", "--timeout", "-1"], "positive"),
        (["events", "--failures", "--successes"], "give one or neither"),
        (["events", "--max", "0"], "at least 1"),
        (["generate"], "WHAT"),
        (["status", "id1", "--app", "a", "-o", "yaml"], "invalid choice: 'yaml'"),
        ([], "COMMAND"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_command_lines_exit_2_naming_the_problem(argv, message, capsys):
    assert cli.main(argv) == ExitCode.USAGE == 2
    assert message in capsys.readouterr().err


def test_help_documents_every_exit_code(capsys):
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for code in (0, 1, 2, 3, 4, 5):
        assert f"\n  {code}  " in text
    for command in ("send", "status", "wait", "list", "cancel", "logs", "events", "generate", "run", "operator"):
        assert f"    {command} " in text


def test_exit_codes_are_the_documented_numbers():
    assert [int(c) for c in (ExitCode.OK, ExitCode.FAILED, ExitCode.USAGE, ExitCode.NOT_FOUND, ExitCode.TIMEOUT, ExitCode.UNAVAILABLE)] == [0, 1, 2, 3, 4, 5]
    assert ExitCode.INTERRUPTED == 130


@pytest.mark.parametrize("text", ['{"a": 1, "a": 2}', '[{"k": {"x": 1, "x": 1}}]', '{"": 0, "": 0}'])
def test_a_json_argument_naming_a_key_twice_is_refused_not_merged(text):
    """json.loads keeps the last of two equal keys; the first value would be lost unseen
    (the HTTP API refuses such a body; the CLI used to send {"a": 2})."""
    with pytest.raises(cli_args.DuplicateKey, match="appears twice in one JSON object"):
        cli_args.parse_value(text)
    with pytest.raises(cli_args.DuplicateKey):
        cli_args.parse_kwargs([f"k={text}"])


@pytest.mark.parametrize("check", [
    lambda: LimeTaskSpec.model_validate({"task": "a.b", "app": "x", "kwargs": {"value\n": 1}}),
    lambda: LimeTaskSpec.model_validate({"task": "a.b\n", "app": "x"}),
    lambda: load_task("sample_tasks.tasks.add\n"),
    lambda: routing_key("sample_tasks.tasks.add\n", "SUCCESS"),
    lambda: factory_from_env({"LIME_TASK_APP_FACTORY": "pkg.app:create\n"}),
])
def test_a_name_with_a_trailing_newline_is_refused(check):
    """re.match(r'^...$') accepts 'name\\n' ($ matches before a final newline): every
    whole-string check is a fullmatch (found: {'value\\n': 1} passed the HTTP API as a
    keyword name, then failed CouldNotLoad in the pod)."""
    with pytest.raises((ValueError, TaskLoadError, FactoryLoadError)):
        check()


def test_a_ttl_beyond_int32_is_refused_before_the_api_server():
    """2**63 passed every check and the API server refused it with a number parse error
    naming no field; the bound is the Job API's own (int32), in the CRD too."""
    ttl = cli_args.option_value(run_options.BY_NAME["ttl_seconds_after_finished"])
    assert ttl("2147483647") == 2**31 - 1
    with pytest.raises(argparse.ArgumentTypeError):
        ttl(str(2**63))
    with pytest.raises(ValueError, match="ttlSecondsAfterFinished"):
        LimeTaskSpec.model_validate({"task": "a.b", "app": "x", "ttlSecondsAfterFinished": 2**31})


@pytest.mark.parametrize("argv, expected", [
    (["send", "t.x", "--app", "a", "--", "-x"], ["-x"]),
    (["send", "t.x", "--app", "a", "1", "--", "-x", "--y", "--"], [1, "-x", "--y", "--"]),
    (["send", "--app", "a", "--", "t.x", "-x"], ["-x"]),
    (["send", "t.x", "2", "--app", "a"], [2]),
])
def test_after_a_double_dash_every_word_is_a_task_argument(argv, expected):
    assert cli.parse(argv).values == expected


def test_a_double_dash_elsewhere_is_still_refused():
    with pytest.raises(SystemExit):
        cli.parse(["status", "t1", "--app", "a", "--", "-x"])
