"""One driver per run folder: ``_lease.json`` names the run that holds the folder, renewed while it works.

A second driver finds a fresh lease and is refused, naming the holder. A lease whose heartbeat is older than its
timeout, or whose holder is a process on this host that no longer exists, is taken over (a driver that was
killed), and the run records whose lease it took. Object stores have no exclusive create through fsspec, so a
lease is taken by a write followed, after ``SETTLE`` seconds, by a read-back: of two drivers that start together
the later write wins and the other is refused. Each renewal reads the lease first: a driver whose lease was taken
meanwhile (it stalled past the timeout) stops at its next check instead of working beside the new holder.
Heartbeats are wall-clock times, so the hosts' clocks must agree to well within the timeout.
"""

import json
import logging
import os
import socket
import threading
import time
from datetime import datetime, timezone

from .sink import Sink

logger = logging.getLogger(__name__)

LEASE = "_lease.json"
TIMEOUT = 120.0  # seconds without a heartbeat after which a lease is taken over
SETTLE = 1.0  # seconds between writing a lease and reading it back


class LeaseHeld(RuntimeError):
    """Another driver holds the run folder; the message names it."""


class LeaseLost(RuntimeError):
    """This driver's lease was taken over by another while it ran."""


def now() -> datetime:
    return datetime.now(timezone.utc)


def describe(holder: dict, why: str | None = None) -> str:
    """``run R (host H, pid P, heartbeat N s ago)``, or with ``why`` in place of the age."""
    age = (now() - datetime.fromisoformat(holder["heartbeat"])).total_seconds()
    detail = why if why is not None else f"heartbeat {age:.0f} s ago"
    return f"run {holder['run_id']} (host {holder['host']}, pid {holder['pid']}, {detail})"


class Lease:
    """The lease of one run folder (any fsspec URL) for the run ``run_id``.

    Use as a context manager: ``acquire`` on entry (raises ``LeaseHeld``), renewed every ``timeout / 4`` seconds
    by a background thread, released on exit. ``check()`` raises ``LeaseLost`` once another run has taken it.
    """

    def __init__(self, output: str, run_id: str, timeout: float = TIMEOUT, settle: float = SETTLE):
        self.output = output.rstrip("/")
        self.sink = Sink(self.output)
        self.run_id, self.timeout, self.settle = run_id, timeout, settle
        self.taken_over: dict | None = None  # the lease this run took over, if any
        self.lost: dict | None = None  # the lease that replaced ours, if any
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read(self) -> dict | None:
        """The lease in the folder now, or None."""
        return self.sink.read_json(LEASE)

    def stale(self, holder: dict) -> str | None:
        """Why ``holder``'s lease may be taken over (None: it is live)."""
        age = (now() - datetime.fromisoformat(holder["heartbeat"])).total_seconds()
        if age > float(holder.get("timeout", self.timeout)):
            return f"no heartbeat for {age:.0f} s"
        if holder["host"] == socket.gethostname() and not _alive(int(holder["pid"])):
            return f"its process {holder['pid']} on this host is gone"
        return None

    def acquire(self) -> None:
        holder = self.read()
        if holder is not None and holder["run_id"] != self.run_id:
            why = self.stale(holder)
            if why is None:
                raise LeaseHeld(
                    f"{self.output} is in use by {describe(holder)}; wait for it to end, or stop it (a lease "
                    f"without a heartbeat for {float(holder.get('timeout', self.timeout)):.0f} s is taken over)"
                )
            logger.warning("taking over the lease of %s: %s", describe(holder), why)
            self.taken_over = {**holder, "why": why}
        self._write()
        time.sleep(self.settle)
        holder = self.read()
        if holder is None or holder["run_id"] != self.run_id:
            raise LeaseHeld(
                f"{self.output} was taken at the same moment by {describe(holder)}"
                if holder
                else f"{self.output}: the lease vanished while being taken"
            )
        self._thread = threading.Thread(target=self._renew, name="lease", daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Raise ``LeaseLost`` if another run has taken the lease."""
        if self.lost is not None:
            raise LeaseLost(f"{self.output}: the lease was taken over by {describe(self.lost)}; this run stops")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            holder = self.read()
            if holder is not None and holder["run_id"] == self.run_id:
                self.sink.remove(LEASE)
        except OSError as error:  # a stale lease is taken over by the next run: nothing is lost
            logger.warning("could not release the lease of %s: %s", self.output, error)

    def _write(self) -> None:
        record = {
            "run_id": self.run_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "heartbeat": now().isoformat(timespec="milliseconds"),
            "timeout": self.timeout,
        }
        self.sink.put(LEASE, json.dumps(record, sort_keys=True).encode())

    def _renew(self) -> None:
        while not self._stop.wait(self.timeout / 4):
            try:
                holder = self.read()
                if holder is not None and holder["run_id"] != self.run_id:
                    logger.error("the lease of %s was taken over by %s", self.output, describe(holder))
                    self.lost = holder
                    return
                self._write()
            except OSError as error:  # the store is down for now; the next tick tries again
                logger.warning("could not renew the lease of %s: %s", self.output, error)

    def __enter__(self) -> "Lease":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
