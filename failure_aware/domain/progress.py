"""How long operations say how far they are: a plain callback, so no layer below the CLI draws anything.

``on_progress(phase, done, total)``: ``phase`` names the pass ("read", "write", "check", ...), ``done`` counts
what it has handled, ``total`` is how many it will handle when that is known cheaply (counters, a file
size), else None. The CLI turns the calls into a progress line on a terminal (``cli/progress.py``).
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int | None], None]
