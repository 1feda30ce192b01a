"""Test-session settings.

Hypothesis draws fresh random examples on a developer's machine (that is how
it finds bugs), but in CI (``CI=true``, as ``.ci/run`` is run) it replays one
fixed, derandomized sequence: a rare example must not turn main red at random
on a change that did not touch it.  Anything it finds locally becomes a fixed
test or a fix.
"""
import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    settings.load_profile("ci")
