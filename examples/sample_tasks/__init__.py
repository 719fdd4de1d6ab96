"""Sample Lime Tasks for the tests and the demo (import with PYTHONPATH=examples)."""
