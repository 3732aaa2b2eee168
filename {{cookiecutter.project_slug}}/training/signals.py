"""Ctrl-C and SIGTERM stop a run cleanly: they become :class:`Interrupted`, held back while a run writes its files.

SIGTERM is what a batch scheduler (Slurm) or a container (docker stop) sends before it kills a process.
"""

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM (a scheduler's or a container's stop) reached a run; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """Turns SIGINT and SIGTERM into :class:`Interrupted`, held back while an epoch is being recorded.

    An epoch's history row and its checkpoint are written as a unit: a signal that arrives in between is raised
    once both are on disk, so an interrupted run's last recorded epoch always has its checkpoint.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.holding, self.pending = False, 0

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.holding:
            self.pending = signum
        else:
            raise Interrupted(signum)

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Handle the signals inside the block (Python lets only the main thread set handlers)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold signals back for the block, then raise the one that came meanwhile."""
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        if self.pending:
            signum, self.pending = self.pending, 0
            raise Interrupted(signum)

    @contextmanager
    def ignored(self) -> Iterator[None]:
        """Ignore SIGTERM inside the block (Ctrl-C still stops it): a run that ends writes its last record whole,
        also when torchrun, as another process failed, stops this one."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)
