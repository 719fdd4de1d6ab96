"""The examples' modules, imported by file for the tests (example folders such as
``02-failure-mailer`` are not importable package names)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(path: Path, name: str) -> ModuleType:
    """The module in file `path` (under EXAMPLES), imported as `name` and registered in
    sys.modules, as the example's own code would be imported."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
