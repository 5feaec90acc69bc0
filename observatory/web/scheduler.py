"""Incremental detection in the background, every minute, while the service answers requests.

One daemon thread: each tick folds new measurements into the dashboard's rollup and runs the detector's
incremental orchestration over what arrived since the last tick. A failing run is logged and counted, never
fatal: the next tick tries again. `run_once()` is the same work on demand (the demo and tests call it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from observatory.store import Store

log = logging.getLogger("observatory.web.scheduler")

Detector = Callable[[Store], Any]


def default_detector() -> Detector | None:
    """observatory.service.run_detection: incremental detection over the store, saving incidents."""
    from observatory.service import run_detection

    return run_detection


@dataclass(slots=True)
class SchedulerState:
    runs: int = 0
    errors: int = 0
    last_error: str | None = None
    last_started: datetime | None = None
    last_finished: datetime | None = None
    last_duration: float = 0.0
    # the highest measurement sequence number detection has seen (for the lag metric)
    seen_seq: int = 0


class DetectionScheduler:
    def __init__(self, store: Store, detector: Detector | None, *, every_seconds: float = 60.0) -> None:
        self.store = store
        self.detector = detector
        self.every = every_seconds
        self.state = SchedulerState()
        self._stop = threading.Event()
        self._run_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.every <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="observatory-detection", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.every)

    def run_once(self) -> Any:
        """Rollup, then detection; returns the detector's result (None without a detector or on failure)."""
        with self._run_lock:  # the loop and an on-demand run never overlap
            st = self.state
            st.last_started = datetime.now(UTC)
            t0 = time.perf_counter()
            result = None
            try:
                top = self.store.changes_since(st.seen_seq).max_seq
                self.store.refresh_rollup()
                if self.detector is not None:
                    result = self.detector(self.store)
                st.seen_seq = max(st.seen_seq, top)
            except Exception as exc:  # a bad run must not kill the service; it is counted and shown in /metrics
                st.errors += 1
                st.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("detection run failed")
            finally:
                st.runs += 1
                st.last_duration = time.perf_counter() - t0
                st.last_finished = datetime.now(UTC)
            return result
