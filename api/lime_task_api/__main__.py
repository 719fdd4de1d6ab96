"""`python -m lime_task_api`: the same as the `lime-task-api` console script."""

import sys

from .entry import main

sys.exit(main())
