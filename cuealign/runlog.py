"""Send a workflow job's logging and progress bars to its Snakemake log file, and its progress
lines (the ``cuealign.progress`` logger: epochs and loss, utterances per second) to the terminal
the user watches as well.

Called only by workflow_scripts: the package itself just uses logging.getLogger(__name__), and
PROGRESS for the few lines a user should see while a long job runs.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

PROGRESS = "cuealign.progress"
# Libraries that install their own stderr handler when imported (often before a job's log is open):
# their messages (deprecation notices and the like) belong in the job's log, not on the terminal.
LIBRARY_LOGGERS = ("transformers", "peft", "accelerate", "huggingface_hub", "torch")


@contextlib.contextmanager
def log_to(path: str | Path, *, level: int = logging.INFO, job: str = "") -> Iterator[logging.Logger]:
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
        # progress lines also go to the terminal (stderr before the job's redirect), named by job
        terminal = logging.StreamHandler(sys.__stderr__)
        name = job or str(Path(path).with_suffix("")).removeprefix("logs/")
        terminal.setFormatter(logging.Formatter(f"[{name}] %(levelname)s: %(message)s"))
        progress = logging.getLogger(PROGRESS)
        progress.addHandler(terminal)
        job_log = logging.getLogger("cuealign.job")
        redirected = [
            (handler, handler.setStream(stream))
            for name in LIBRARY_LOGGERS
            for handler in logging.getLogger(name).handlers
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.__stderr__, sys.stderr)
        ]
        try:
            with contextlib.redirect_stderr(stream):
                yield job_log
        except BaseException as exc:
            job_log.exception("job failed: %s", exc)
            # Also say it where the user is looking, not only in the log file.
            print(f"{type(exc).__name__}: {exc}\n(full log: {path})", file=sys.__stderr__)
            raise
        finally:
            root.removeHandler(handler)
            progress.removeHandler(terminal)
            for library_handler, previous in redirected:
                library_handler.setStream(previous)
