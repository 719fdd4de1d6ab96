"""The value rules: which Python values travel through Lime Task exactly, and how.

Task arguments go sender -> JSON -> the API server (stored in the LimeTask) -> the
operator -> the runner; a result goes runner -> termination message (a string) -> the
operator -> the API server (status.result) -> `get_status` and the event body. Every
value either arrives as an equal value of the same types, or it is refused at the
earliest point with a `ValueProblem` that names its place (``args[1]['rows'][0]``) and
the rule. The rules, each found by experiment on kube-apiserver v1.34 (see
tests/integration/test_values.py, which checks `simulate_api_server` against it):

- Types: exactly None, bool, int, float, str, list and dict with str keys. Anything
  else (tuple, set, bytes, Decimal, datetime, an Enum, a dict or str subclass) would
  arrive as another type or not at all, so it is refused; only the top-level args
  sequence may be a tuple (`send_task(*args)` makes one).
- int: within int64 (-2**63 .. 2**63-1). The API server's decoder turns any other
  integer into a float64 and writes it back rounded: 2**64+1 arrives as
  18446744073709552000, 2**63 as 9223372036854776000.
- float: finite (NaN and ±Infinity are not JSON; the API server refuses them). A float
  with an integral value (1.0, -0.0, 1e20) is re-encoded by the API server as an
  integer (`1`, `0`, `100000000000000000000`), which Python reads as an int. Such
  floats are not refused: their places travel beside the value as JSON pointers
  (RFC 6901) in `spec.floatPaths` / `status.resultFloatPaths`, and `restore` turns the
  numbers there back into floats. A negative zero's pointer starts with ``-``
  (``-/args/0``), since the API server drops the sign of -0 (a JSON pointer itself is
  empty or starts with ``/``, so the marker is unambiguous).
- str (values and keys): valid Unicode, i.e. encodable as UTF-8. A lone surrogate
  (``"\\ud800"``) cannot be; the API server would store U+FFFD instead.
- Nesting: at most MAX_DEPTH containers inside each other per value. The API server
  accepts a whole object nested up to 10,000 levels (Go's encoding/json
  maxNestingDepth; measured: args 9,998 deep is stored, 9,999 is refused with
  "exceeded max depth"), but Python's json decoder
  raises RecursionError near 1,000 (sys.getrecursionlimit()), so a deeper value could
  not even be read by the library, the CLI or the operator. Checked iteratively here,
  so a 100,000-deep value cannot crash the checker.

Carried as they are: NUL and other control characters, U+FFFE/U+FFFF, empty keys,
keys such as "apiVersion" or "metadata" inside values. Not kept: the order of a
dict's keys (the API server writes them sorted; the dict is equal, and kwargs bind by
name).

Pure functions only: no I/O, no recursion.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from decimal import Decimal
from typing import Any, Iterable, Iterator, Optional

# Containers nested inside each other in one value (an argument, a keyword argument's
# value, a result): `[[1]]` has depth 2, `1` depth 0. Far below Python's recursion limit
# (1000), so everything that reads a LimeTask with `json` can read an accepted one.
MAX_DEPTH = 100
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Go's encoding/json (and so the API server) writes a float64 in plain decimal notation
# below this magnitude, in exponent notation (`1e+21`) from it on.
GO_EXPONENT_FROM = 1e21
NEGATIVE_ZERO_MARK = "-"

_PLAIN_SCALARS = (type(None), bool, int, float, str)

# What to send instead of a type JSON cannot carry exactly.
_HINTS: dict[str, str] = {
    "tuple": "it would arrive as a list; send a list",
    "set": "JSON has no sets; send a sorted list",
    "frozenset": "JSON has no sets; send a sorted list",
    "bytes": "JSON has no bytes; send a str (e.g. base64)",
    "bytearray": "JSON has no bytes; send a str (e.g. base64)",
    "Decimal": "it would lose its exact digits; send a str",
    "datetime": "JSON has no dates; send an ISO 8601 str",
    "date": "JSON has no dates; send an ISO 8601 str",
    "time": "JSON has no times; send an ISO 8601 str",
    "UUID": "send str(uuid)",
}


class ValueProblem(ValueError):
    """A value that cannot travel exactly. `place` names it (``args[1]['rows'][0]``),
    `rule` says which rule it breaks; str() is ``"<place>: <rule>"``."""

    def __init__(self, place: str, rule: str) -> None:
        super().__init__(f"{place}: {rule}")
        self.place = place
        self.rule = rule


# --------------------------------------------------------------------------------------
# Places: a linked list (parent, key) while walking, rendered only when needed
# --------------------------------------------------------------------------------------

_Path = Optional[tuple]  # (parent path, key) or None for the root


def _keys(path: _Path) -> list:
    keys = []
    while path is not None:
        path, key = path
        keys.append(key)
    keys.reverse()
    return keys


# A place deeper than this is shown with its middle left out (a 10,000-deep place
# would otherwise make a 40 KB message, too long for any status field).
_PLACE_KEYS_SHOWN = 12


# A key longer than this is shown by its start (a 5,400-character key must not make a
# message the status cannot hold).
_KEY_CHARS_SHOWN = 40


def _subscript(key: Any) -> str:
    if isinstance(key, str) and len(key) > _KEY_CHARS_SHOWN:
        return f"[{key[:_KEY_CHARS_SHOWN]!r}...({len(key)} characters)]"
    if type(key) is int:  # list indexes, and int keys of any size
        return f"[{_describe_int(key)}]"
    shown = repr(key)
    return f"[{shown}]" if len(shown) <= _KEY_CHARS_SHOWN else f"[{shown[:_KEY_CHARS_SHOWN]}...]"


def render_place(root: str, keys: Iterable[Any]) -> str:
    """``root[0]['name']``: Python subscript syntax, so any key is unambiguous. Long
    places keep their first and last keys: ``args[0][0]...(96 more)...[0][0]``; long
    keys their first 40 characters."""
    keys = list(keys)
    half = _PLACE_KEYS_SHOWN // 2
    if len(keys) > _PLACE_KEYS_SHOWN:
        return (
            root + "".join(_subscript(key) for key in keys[:half]) + f"...({len(keys) - 2 * half} more)..."
            + "".join(_subscript(key) for key in keys[-half:])
        )
    return root + "".join(_subscript(key) for key in keys)


def _describe_int(value: int) -> str:
    # str() of an int over 4300 digits raises ValueError (sys.int_info); never needed.
    return str(value) if value.bit_length() <= 256 else f"<int of {value.bit_length()} bits>"


def json_pointer(keys: Iterable[Any]) -> str:
    """The RFC 6901 pointer of a place (``/rows/0/parent``); '' is the whole value."""
    return "".join("/" + str(key).replace("~", "~0").replace("/", "~1") for key in keys)


def parse_pointer(pointer: str) -> list[str]:
    """The reference tokens of an RFC 6901 pointer; ValueError if it is not one."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ValueError(f"{pointer!r} is not a JSON pointer (it must be empty or start with '/')")
    if re.search(r"~(?![01])", pointer):
        raise ValueError(f"{pointer!r} is not a JSON pointer ('~' must be followed by 0 or 1)")
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


# --------------------------------------------------------------------------------------
# The rules
# --------------------------------------------------------------------------------------


def _type_rule(value: Any) -> str:
    name = type(value).__name__
    hint = _HINTS.get(name)
    for base in (bool, int, float, str, list, dict):
        if hint is None and isinstance(value, base):
            hint = f"it is a subclass of {base.__name__} and would arrive as a plain {base.__name__}"
    return f"a value of type {name} cannot travel as JSON exactly ({hint or 'only None, bool, int, float, str, list and dict are JSON'})"


def _string_rule(text: str) -> Optional[str]:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return (
            f"the string has a lone surrogate {text[error.start]!r} at index {error.start}, which is not "
            "valid Unicode (the API server would store U+FFFD instead)"
        )
    return None


def _scalar_rule(value: Any) -> Optional[str]:
    kind = type(value)
    if kind is int:
        if not INT64_MIN <= value <= INT64_MAX:
            return (
                f"the integer {_describe_int(value)} is outside int64 ({INT64_MIN} .. {INT64_MAX}); the API server "
                "would store it as an inexact float. Send it as a str"
            )
    elif kind is float:
        if not math.isfinite(value):
            return f"{value!r} is not a JSON number (NaN and Infinity are not JSON)"
    elif kind is str:
        return _string_rule(value)
    return None


def _walk(value: Any, max_depth: int) -> Iterator[tuple[Any, _Path, int, Optional[str]]]:
    """(value, path, depth, problem) for every value inside `value`, depth first,
    iteratively. A container deeper than `max_depth` is reported, not entered."""
    stack: list[tuple[Any, _Path, int]] = [(value, None, 0)]
    while stack:
        item, path, depth = stack.pop()
        kind = type(item)
        if kind in _PLAIN_SCALARS:
            yield item, path, depth, _scalar_rule(item)
            continue
        if kind is not list and kind is not dict:
            yield item, path, depth, _type_rule(item)
            continue
        if depth >= max_depth:
            yield item, path, depth, (
                f"nested deeper than {max_depth} levels of lists and dicts (or it contains itself); "
                "pass flatter data"
            )
            continue
        yield item, path, depth, None
        if kind is list:
            for index in range(len(item) - 1, -1, -1):
                stack.append((item[index], (path, index), depth + 1))
        else:
            children = []
            for key, child in item.items():
                if type(key) is not str:
                    yield key, (path, key), depth + 1, (
                        f"the key {_subscript(key)[1:-1]} is of type {type(key).__name__}; JSON keys are strings"
                    )
                    continue
                problem = _string_rule(key)
                if problem:
                    yield key, (path, key), depth + 1, problem.replace("the string", "the key", 1)
                    continue
                children.append((child, (path, key), depth + 1))
            stack.extend(reversed(children))


def problems(value: Any, root: str, max_depth: int = MAX_DEPTH, limit: int = 10) -> list[ValueProblem]:
    """Up to `limit` ValueProblems of `value` (placed under `root`), in document order;
    [] when it travels exactly."""
    found = []
    for _, path, _, problem in _walk(value, max_depth):
        if problem:
            found.append(ValueProblem(render_place(root, _keys(path)), problem))
            if len(found) >= limit:
                break
    return found


def check(value: Any, root: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise the first ValueProblem of `value` (placed under `root`, e.g. 'result')."""
    found = problems(value, root, max_depth, limit=1)
    if found:
        raise found[0]


def check_arguments(args: Any, kwargs: Any, max_depth: int = MAX_DEPTH) -> None:
    """The rules for a task's arguments: `args` a list or tuple (the only place a tuple
    is fine), `kwargs` a dict with str keys; each value checked under ``args[i]`` /
    ``kwargs['name']``. Raises the first ValueProblem."""
    if type(args) not in (list, tuple):
        raise ValueProblem("args", f"must be a list or tuple, got {type(args).__name__}")
    if type(kwargs) is not dict:
        raise ValueProblem("kwargs", f"must be a dict, got {type(kwargs).__name__}")
    for index, item in enumerate(args):
        check(item, f"args[{index}]", max_depth)
    for key, item in kwargs.items():
        if type(key) is not str:
            raise ValueProblem(render_place("kwargs", [key]), f"a keyword argument name must be a str, got {type(key).__name__}")
        problem = _string_rule(key)
        if problem:
            raise ValueProblem(render_place("kwargs", [key]), problem.replace("the string", "the name", 1))
        check(item, render_place("kwargs", [key]), max_depth)


def spec_problem(spec: Any) -> Optional[str]:
    """Why a stored LimeTask spec's arguments cannot run, or None: the rules above on
    `args` and `kwargs` after `floatPaths` is applied, e.g. ``"spec.args[0][0]...(90
    more)...[0]: nested deeper than 100 levels ..."``. For the operator, on any body
    the API server accepted (a kubectl-created one too): iterative, so a 10,000-deep
    value costs one walk, not a crash. LimeTaskSpec runs the same rules."""
    if not isinstance(spec, dict):
        return "spec: not an object"
    arguments = {"args": spec.get("args", []), "kwargs": spec.get("kwargs", {})}
    try:
        arguments = restore(arguments, spec.get("floatPaths"), root="spec.floatPaths")
        check_arguments(arguments["args"], arguments["kwargs"])
    except ValueProblem as problem:
        return str(problem) if problem.place.startswith("spec.") else f"spec.{problem}"
    return None


# --------------------------------------------------------------------------------------
# Floats with an integral value: carried as pointers beside the value
# --------------------------------------------------------------------------------------


def float_paths(value: Any, max_depth: int = MAX_DEPTH) -> list[str]:
    """JSON pointers of the floats in `value` whose value is integral (1.0, 1e20, -0.0),
    in document order; a negative zero's pointer is prefixed with '-'. Call after
    `check` (problems are skipped here, not reported)."""
    paths = []
    for item, path, _, problem in _walk(value, max_depth):
        if problem is None and type(item) is float and item.is_integer():
            pointer = json_pointer(_keys(path))
            paths.append(NEGATIVE_ZERO_MARK + pointer if item == 0 and math.copysign(1.0, item) < 0 else pointer)
    return paths


def _key_in(container: Any, token: str) -> Any:
    """The key `token` names in `container` (an int for a list); LookupError if none."""
    if type(container) is dict:
        if token not in container:
            raise LookupError(f"no key {token!r}")
        return token
    if type(container) is list:
        if not re.fullmatch(r"0|[1-9][0-9]*", token) or int(token) >= len(container):
            raise LookupError(f"no index {token!r} in a list of {len(container)}")
        return int(token)
    raise LookupError(f"cannot look up {token!r} in a {type(container).__name__}")


def restore(value: Any, paths: Optional[Iterable[Any]], root: str = "floatPaths", strict: bool = True) -> Any:
    """`value` with the numbers at `paths` (as `float_paths` gives them) made floats
    again. The value passed in is not changed: containers on the way are copied.

    strict: an entry that is not a pointer, or does not lead to a number, raises
    ValueProblem naming it (``floatPaths[3]``); otherwise it is skipped (for reading
    what the operator wrote, where one corrupt entry must not hide the result).
    """
    if not paths:
        return value
    holder = [value]  # so that the whole value ('') is a place like any other
    copied: set[int] = set()
    for index, entry in enumerate(paths):
        try:
            if not isinstance(entry, str):
                raise ValueError(f"it is a {type(entry).__name__}, not a str")
            negative = entry.startswith(NEGATIVE_ZERO_MARK)
            parent: Any = holder
            key: Any = 0
            for token in parse_pointer(entry[1:] if negative else entry):
                child = parent[key]
                if type(child) in (list, dict) and id(child) not in copied:
                    child = list(child) if type(child) is list else dict(child)
                    parent[key] = child
                    copied.add(id(child))
                parent, key = child, _key_in(child, token)
            number = parent[key]
            if type(number) not in (int, float):
                raise ValueError(f"it points at a {type(number).__name__}, not a number")
            if negative and number != 0:
                raise ValueError(f"it marks a negative zero but points at {number!r}")
            parent[key] = -0.0 if negative else float(number)
        except (ValueError, LookupError, OverflowError) as error:
            if strict:
                raise ValueProblem(f"{root}[{index}]", f"{entry!r} is not the place of a float: {error}") from None
    return holder[0]


def result_fields(result: Any) -> dict[str, Any]:
    """The status fields that carry a task's result exactly: ``{"result": result}``
    plus ``"resultFloatPaths"`` when it holds floats with an integral value. For the
    operator, with the result as parsed from the runner's report (where 2.0 is still a
    float: the report is a string); `status_result` reads them back."""
    paths = float_paths(result)
    return {"result": result, "resultFloatPaths": paths} if paths else {"result": result}


def status_result(status: Any) -> Any:
    """The result in a LimeTask's status (the API's camelCase dict) as the task returned
    it: `result` with `resultFloatPaths` restored. Lenient (a corrupt entry is skipped),
    because this reads what the operator wrote."""
    if not isinstance(status, dict):
        return None
    return restore(status.get("result"), status.get("resultFloatPaths"), root="resultFloatPaths", strict=False)


# --------------------------------------------------------------------------------------
# Reading JSON that people type or send: a key named twice is refused
# --------------------------------------------------------------------------------------


class DuplicateKey(ValueError):
    """A JSON object names one key twice: json.loads would keep the last value and lose
    the first unseen. ``key`` is the repeated key; ``where`` (optional) names the text."""

    def __init__(self, key: str, where: str = "") -> None:
        text = f"the key {key!r} appears twice in one JSON object"
        super().__init__(f"{where}: {text}" if where else text)
        self.key = key


def unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for json.loads that raises DuplicateKey instead of keeping
    the last of two equal keys."""
    result: dict[str, Any] = {}
    for key, item in pairs:
        if key in result:
            raise DuplicateKey(key)
        result[key] = item
    return result


# --------------------------------------------------------------------------------------
# Reading API responses that may hold a poison object
# --------------------------------------------------------------------------------------

# Levels of a whole API response decoded; deeper parts are cut. A task list wraps an
# argument in 5 levels (list, items, task, spec, args), so every accepted value
# (MAX_DEPTH) is kept whole, and 200 is far below the decoder's ~1000.
DECODE_MAX_DEPTH = 2 * MAX_DEPTH
# What a cut part is replaced by: a string no accepted value is refused for, but that
# `find_string` locates to say where the cut was. Random per process: a fixed text was an
# ordinary value a task could send or return, and every read of that task then said it
# was nested too deep (the HTTP API answered 503 for it and for its app's whole list).
TOO_DEEP = f"<lime-task: nested deeper than {DECODE_MAX_DEPTH} levels; not decoded; {secrets.token_hex(16)}>"
# A JSON string (escapes included) or a bracket; everything else is copied as it is.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def decode_bounded(text: "str | bytes", max_depth: int = DECODE_MAX_DEPTH) -> tuple[Any, bool]:
    """json.loads for text that may nest deeper than Python's decoder can go (it raises
    RecursionError near 1000 levels; the API server stores up to 10,000): every list or
    object that starts deeper than `max_depth` levels is replaced by the string
    TOO_DEEP before decoding. Returns (the value, whether anything was cut).
    json.JSONDecodeError for text that is not JSON. One pass, no recursion."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    pieces: list[str] = []
    depth = 0
    copied_to = 0
    cut_from: Optional[int] = None
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token[0] == '"':
            continue
        if token in "[{":
            depth += 1
            if depth == max_depth + 1:
                cut_from = match.start()
        else:
            if depth == max_depth + 1 and cut_from is not None:
                pieces.append(text[copied_to:cut_from])
                pieces.append(json.dumps(TOO_DEEP))
                copied_to = match.end()
                cut_from = None
            depth -= 1
    if copied_to == 0:
        return json.loads(text), False
    pieces.append(text[copied_to:])
    return json.loads("".join(pieces)), True


def find_string(value: Any, needle: str) -> Optional[list]:
    """The keys leading to the first str equal to `needle` in `value` (document
    order), None if there is none. Iterative."""
    for item, path, _, _ in _walk(value, max_depth=10**9):
        if type(item) is str and item == needle:
            return _keys(path)
    return None


def cut_place(obj: Any, root: str = "") -> Optional[str]:
    """Where `decode_bounded` cut `obj` (``spec['args'][0]...``), None if it did not."""
    # A quick look first (C speed): the walk only runs for objects that were cut.
    if TOO_DEEP not in json.dumps(obj, ensure_ascii=False):
        return None
    keys = find_string(obj, TOO_DEEP)
    if keys is None:
        return None
    if root:
        return render_place(root, keys)
    head, rest = (str(keys[0]), keys[1:]) if keys else ("(root)", [])
    return render_place(head, rest)


# --------------------------------------------------------------------------------------
# What the API server does to a JSON value (checked against the real one in the tests)
# --------------------------------------------------------------------------------------


def go_float_text(number: float) -> str:
    """Go's encoding/json text of a float64, which is how the API server writes one:
    the shortest digits that read back exactly, in plain notation ('f') from 1e-6 up to
    1e21 and in exponent notation ('e', exponent trimmed: 1e-7, 1e+21) outside
    (encoding/json floatEncoder)."""
    if number == 0:
        return "-0" if math.copysign(1.0, number) < 0 else "0"
    sign = "-" if number < 0 else ""
    # repr gives the shortest round-trip digits, as strconv's precision -1 does.
    _, digit_tuple, exponent = Decimal(repr(abs(number))).normalize().as_tuple()
    digits = "".join(str(d) for d in digit_tuple)
    point = len(digits) + int(exponent)  # where the decimal point goes in `digits`
    if 1e-6 <= abs(number) < GO_EXPONENT_FROM:
        if point >= len(digits):
            return sign + digits + "0" * (point - len(digits))
        if point > 0:
            return sign + digits[:point] + "." + digits[point:]
        return sign + "0." + "0" * -point + digits
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    power = point - 1
    return f"{sign}{mantissa}e{'+' if power >= 0 else '-'}{abs(power):02d}" if power >= 0 else f"{sign}{mantissa}e-{-power}"


def _go_number(number: Any) -> Any:
    """Decode one JSON number as the API server does (int64 if the text is an integer
    that fits, else float64) and read back what it writes."""
    if type(number) is int and INT64_MIN <= number <= INT64_MAX:
        return number
    as_float = float(number)  # OverflowError for ints beyond float64: refused earlier
    return json.loads(go_float_text(as_float))


def simulate_api_server(value: Any) -> Any:
    """What Python reads back after the API server stored `value` (a JSON-ready value):
    ints outside int64 become float64, floats come back as Go writes them (integral
    ones as integers), object keys come back sorted. Iterative; the value itself is not
    changed. Checked against the real API server in tests/integration/test_values.py."""
    holder = [value]
    stack: list[tuple[Any, Any]] = [(holder, 0)]
    while stack:
        parent, key = stack.pop()
        item = parent[key]
        if type(item) is list:
            item = parent[key] = list(item)
            stack.extend((item, index) for index in range(len(item)))
        elif type(item) is dict:
            # Go writes map keys sorted (byte-wise UTF-8 = code point order).
            item = parent[key] = dict(sorted(item.items()))
            stack.extend((item, name) for name in item)
        elif type(item) in (int, float):
            parent[key] = _go_number(item)
    return holder[0]
