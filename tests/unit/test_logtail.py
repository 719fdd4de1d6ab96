"""The kept end of a failed attempt's log: bounded, whole lines, visibly cut."""

from hypothesis import given, settings
from hypothesis import strategies as st

from lime_task_operator.logtail import CUT_MARKER, TAIL_BYTES, tail

LINES = st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"),
                         max_size=300), max_size=60)


@settings(max_examples=300, deadline=None)
@given(LINES, st.booleans())
def test_the_tail_is_bounded_and_made_of_the_last_whole_lines(lines, final_newline):
    text = "\n".join(lines) + ("\n" if final_newline and lines else "")
    kept = tail(text)
    assert len(kept.encode()) <= TAIL_BYTES
    if len(text.encode()) <= TAIL_BYTES:
        assert kept == text
        return
    assert kept.startswith(CUT_MARKER)
    body = kept[len(CUT_MARKER):]
    assert text.endswith(body)
    # Cut at a line boundary, unless the last line alone is longer than the budget.
    before = text[: len(text) - len(body)]
    last_line_too_long = "\n" not in body.rstrip("\n")
    assert before.endswith("\n") or last_line_too_long


def test_a_short_log_is_kept_as_it_is():
    assert tail("one\ntwo\n") == "one\ntwo\n"
    assert tail("") == ""


def test_a_long_log_keeps_its_last_lines():
    text = "".join(f"line {n}\n" for n in range(1000))
    kept = tail(text)
    assert kept.startswith(CUT_MARKER + "line ") and kept.endswith("line 999\n")
    assert len(kept.encode()) <= TAIL_BYTES


def test_one_huge_line_keeps_its_end():
    kept = tail("x" * 10_000 + "THE END")
    assert kept.startswith(CUT_MARKER) and kept.endswith("THE END")
    assert len(kept.encode()) <= TAIL_BYTES


def test_multibyte_characters_are_never_split():
    kept = tail("\u00e9" * 5000)
    assert set(kept[len(CUT_MARKER):]) == {"\u00e9"} and len(kept.encode()) <= TAIL_BYTES
