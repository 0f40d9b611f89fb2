"""Send a workflow job's logging and progress bars to its Snakemake log file.

Called only by workflow_scripts: the package itself just uses logging.getLogger(__name__).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def log_to(path: str | Path, *, level: int = logging.INFO) -> Iterator[logging.Logger]:
    """Log to ``path`` (and progress bars, which write to stderr) for the duration of a job.

    An exception is written to the log with its traceback, then re-raised so the job fails.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    with open(path, "w", buffering=1) as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(level)
        job = logging.getLogger("cuealign.job")
        try:
            with contextlib.redirect_stderr(stream):
                yield job
        except BaseException as exc:
            job.exception("job failed: %s", exc)
            # Also say it where the user is looking, not only in the log file.
            print(f"{type(exc).__name__}: {exc}\n(full log: {path})", file=sys.__stderr__)
            raise
        finally:
            root.removeHandler(handler)
