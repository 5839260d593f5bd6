"""Where a run's tables go: one Parquet file per table per shard, committed by a ``_done`` marker.

The shard is the unit of work and of output (ray.md §0, §2.5): each table's file is written to a
hidden temporary name and renamed, then ``_done/{shard}.json`` is written last. A shard with a
marker is complete and is skipped on re-run; a shard without one is redone from scratch, its
earlier partial files replaced, so no row is ever written twice. Hidden names start with ``.`` or
``_``, so ``pandas.read_parquet(folder)`` sees only complete files. Every attempt at a shard leaves
``_attempts/{shard}/{run}-{n}.json`` (who and where), which is how a run counts its retries.
"""

import fnmatch
import hashlib
import json
import logging
import os
import re
import socket
import uuid
from datetime import datetime, timezone

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from .preflight import ConfigError

logger = logging.getLogger(__name__)

DONE = "_done"
ATTEMPTS = "_attempts"
CONFIG = "_config.json"
# What --overwrite leaves in a folder: the built-in fixture's shards and the lease of the run doing it.
KEEP_ON_OVERWRITE = ("_fixture", "_lease.json")
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


def shard_id(url: str) -> str:
    """A file-name-safe id for an input shard: its stem, plus a hash of the full URL (stems can repeat)."""
    stem = url.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return f"{_UNSAFE.sub('_', stem)}-{hashlib.sha1(url.encode()).hexdigest()[:8]}"


class Sink:
    """Writes and commits the per-shard outputs of one run folder (any fsspec URL)."""

    def __init__(self, output: str):
        self.output = output.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.output)

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _list(self, folder: str, pattern: str = "*") -> list[str]:
        """The files under ``folder`` (at any depth) whose path below it matches ``pattern``: one listing, fresh.

        An object store lists a whole prefix in one paginated request when no depth is asked (s3fs's ``find``),
        where a glob over ``a/*/b`` lists every ``a/x/`` folder apart: one request per shard. The cached listing
        is dropped first, since other processes write this folder.
        """
        path = self._path(folder)
        self.fs.invalidate_cache(path)
        try:
            found = self.fs.find(path)
        except FileNotFoundError:
            return []
        start = len(path.rstrip("/")) + 1
        return sorted(p for p in found if fnmatch.fnmatchcase(p[start:], pattern))

    def done(self) -> set[str]:
        """Ids of the shards already committed: one listing of the markers."""
        return {p.rsplit("/", 1)[-1][: -len(".json")] for p in self._list(DONE, "*.json") if "/." not in p}

    def committed(self, shard: str) -> dict | None:
        """The marker's stats of a committed shard, else None."""
        path = self._path(DONE, f"{shard}.json")
        self.fs.invalidate_cache(self._path(DONE))
        if not self.fs.exists(path):
            return None
        with self.fs.open(path, "r") as f:
            return json.load(f)

    def put(self, name: str, data: bytes) -> None:
        """``{folder}/{name}``, replaced whole: readers see the old bytes or the new, never part of them."""
        self.fs.makedirs(self.root, exist_ok=True)
        self._replace(self._path(name), lambda f: f.write(data))

    def read_json(self, name: str) -> dict | None:
        """``{folder}/{name}`` as JSON read fresh (not from a cached listing), or None if it does not exist."""
        self.fs.invalidate_cache(self.root)
        try:
            with self.fs.open(self._path(name), "r") as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def remove(self, name: str) -> None:
        self.fs.rm(self._path(name))

    def write_table(self, table: str, name: str, data: pa.Table) -> None:
        """``{table}/{name}.parquet``, written under a hidden name and renamed (an existing file is replaced)."""
        self.fs.makedirs(self._path(table), exist_ok=True)
        self._replace(self._path(table, f"{name}.parquet"), lambda f: pq.write_table(data, f))

    def commit(self, shard: str, stats: dict) -> None:
        """Mark a shard complete (its stats as the marker's content): the last write of a shard."""
        self.fs.makedirs(self._path(DONE), exist_ok=True)
        self._replace(self._path(DONE, f"{shard}.json"), lambda f: f.write(json.dumps(stats, sort_keys=True).encode()))

    def begin(self, shard: str, run_id: str, **where) -> int:
        """Record an attempt at ``shard`` by ``run_id`` (host, pid and ``where``); returns the run's attempt number.

        Every attempt writes its own uniquely named record, so concurrent attempts never overwrite each other.
        """
        folder = self._path(ATTEMPTS, shard)
        self.fs.makedirs(folder, exist_ok=True)
        record = {
            "shard_id": shard,
            "run_id": run_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **where,
        }
        name = f"{run_id}-{uuid.uuid4().hex[:8]}.json"
        self._replace(f"{folder}/{name}", lambda f: f.write(json.dumps(record, sort_keys=True).encode()))
        return self.attempt_count(shard, run_id)

    def attempt_count(self, shard: str = "*", run_id: str = "*") -> int:
        """How many attempts one shard (or every shard) had by one run (or every run): file names only."""
        return len(self._attempt_files(shard, run_id))

    def attempts(self, shard: str = "*", run_id: str = "*") -> list[dict]:
        """The attempt records of one shard (or every shard) by one run (or every run), oldest first."""
        out = []
        for path in self._attempt_files(shard, run_id):
            with self.fs.open(path, "r") as f:
                out.append(json.load(f))
        return sorted(out, key=lambda a: (a["started_at"], a["run_id"]))

    def attempt_runs(self, shard: str) -> list[str]:
        """The run id of each attempt at ``shard`` (from the file names alone: one listing of its folder)."""
        return [path.rsplit("/", 1)[-1].rsplit("-", 1)[0] for path in self._attempt_files(shard, "*")]

    def _attempt_files(self, shard: str, run_id: str) -> list[str]:
        if shard == "*":  # every shard's: one listing of the whole folder
            return self._list(ATTEMPTS, f"*/{run_id}-*.json")
        return self._list(f"{ATTEMPTS}/{shard}", f"{run_id}-*.json")

    def _replace(self, final: str, write) -> None:
        """Write ``final`` through a uniquely named hidden file and a rename: readers never see half a file, and
        two writers of one shard (a retried attempt and a straggler) never share a temporary file."""
        parent, name = final.rsplit("/", 1)
        temporary = f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with self.fs.open(temporary, "wb") as f:
                write(f)
            self.fs.mv(temporary, final)
        except BaseException:
            if self.fs.exists(temporary):
                self.fs.rm(temporary)
            raise

    def stats(self) -> list[dict]:
        """The markers' stats, one per committed shard."""
        out = []
        for path in self._list(DONE, "*.json"):
            with self.fs.open(path, "r") as f:
                out.append(json.load(f))
        return out

    def claim(self, fingerprint: dict, *, overwrite: bool = False, defaults: dict | None = None) -> None:
        """Tie the folder to one configuration: a folder written under another is refused unless ``overwrite``.

        ``fingerprint`` holds what decides the rows (model, pruning, data). Resuming with the same one is
        the normal case; with ``overwrite`` the folder's tables and markers are removed first. ``defaults``
        (per part, the default of every field) fills fields a folder written by an earlier version lacks, so
        a field added since, at its default, does not make the same run "another configuration".
        """
        path = self._path(CONFIG)
        if self.fs.exists(path):
            with self.fs.open(path, "r") as f:
                previous = json.load(f)
            for part, values in (defaults or {}).items():
                if isinstance(previous.get(part), dict):
                    previous[part] = {**values, **previous[part]}
            if previous != fingerprint:
                if not overwrite:
                    changed = sorted(
                        k for k in set(previous) | set(fingerprint) if previous.get(k) != fingerprint.get(k)
                    )
                    raise ConfigError(
                        f"{self.output} holds a run with another configuration (differs in {', '.join(changed)}); "
                        "use another output folder, or --overwrite to replace it"
                    )
                logger.warning("overwriting %s: removing the earlier run's tables and markers", self.output)
                for entry in self.fs.ls(self.root, detail=False):
                    if not entry.rstrip("/").rsplit("/", 1)[-1].startswith(KEEP_ON_OVERWRITE):
                        self.fs.rm(entry, recursive=True)
        self.fs.makedirs(self.root, exist_ok=True)
        self._replace(path, lambda f: f.write(json.dumps(fingerprint, sort_keys=True).encode()))

    def forget(self, shard: str) -> None:
        """Remove a shard's marker, files and attempt records (to recompute it); not for a compacted shard, whose
        rows share a file with other shards'."""
        from .compact import compacted  # compact builds on the sink

        if shard in compacted(self.fs, self.root).shards:
            raise ValueError(f"{shard} is compacted with other shards (jobs/compact.py) and cannot be redone alone")
        for path in self.fs.glob(self._path("*", f"{shard}.parquet")) + self.fs.glob(
            self._path(DONE, f"{shard}.json")
        ):
            self.fs.rm(path)
        if self.fs.exists(self._path(ATTEMPTS, shard)):
            self.fs.rm(self._path(ATTEMPTS, shard), recursive=True)
