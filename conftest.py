"""The repository's pytest set-up: nbval's kernels (``make test`` checks ``weeks/`` too) run headless, so the
notebooks keep their static renders instead of live widgets (``course_utils.runtime.live_widgets``)."""

import os

from course_utils.runtime import HEADLESS_ENV

os.environ.setdefault(HEADLESS_ENV, "1")
