"""Crash-safe persistence of the node state to ``data.json``.

The original rewrote data.json in place, so a crash mid-write left a torn
file, and a torn file was then silently replaced by an empty state. Here a
write is temp file + fsync + rename (+ fsync of the folder), so the file on
disk is always a complete old or new version; an unreadable file is moved
aside, never overwritten.
"""

import logging
import os
import tempfile
import time

from . import strictjson

log = logging.getLogger("heckle")


class CheckpointError(Exception):
    """data.json could not be read or written."""


def _temp_prefix(path):
    return "." + os.path.basename(path) + "."


def write_atomic(path, data):
    """Replace ``path`` with ``data`` (bytes) so readers see old or new, never a mix."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), dir=folder)
    try:
        # mkstemp makes it 0600: keep the mode the file had, or the umask's.
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _mode_for(path):
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


def load(path, validate):
    """Return the JSON object stored at ``path`` ({} if there is none).

    ``validate`` turns the parsed object into the caller's form and raises
    ValueError on anything it cannot accept. A file that fails to parse or
    validate is renamed ``<path>.corrupt-<timestamp>`` and logged at ERROR.
    Temporaries left by a write that a crash interrupted are removed. A
    file the system will not let us read (a folder, no permission) raises
    CheckpointError: starting empty would hide the operator's mistake.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        for name in os.listdir(folder):
            if name.startswith(_temp_prefix(path)):
                os.unlink(os.path.join(folder, name))
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return validate({})
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return validate(strictjson.loads(raw))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        aside = _free_name(f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        os.replace(path, aside)
        log.error("cannot read %s (%s); moved it to %s and started with no nodes",
                  path, exc, aside)
        return validate({})


def _free_name(path):
    """``path``, or ``path.N`` for the first N not taken: never overwrite an earlier one."""
    candidate, number = path, 1
    while os.path.lexists(candidate):
        candidate, number = f"{path}.{number}", number + 1
    return candidate


class Checkpointer:
    """Writes a snapshot of the state, coalescing bursts of changes.

    ``snapshot()`` returns the JSON-able state; ``call_later(delay, f)`` is a
    reactor's callLater (injected so that this module stays free of any
    event loop). ``mark_dirty`` guarantees a write within ``delay`` seconds;
    ``flush`` writes at once, for changes that must be on disk before they
    are acknowledged.
    """

    def __init__(self, path, snapshot, call_later, delay=0.5):
        self.path = path
        self._snapshot = snapshot
        self._call_later = call_later
        self._delay = delay
        self._pending = None
        self.writes = 0
        self.last_duration = 0.0
        self.total_duration = 0.0

    def mark_dirty(self):
        if self._pending is None:
            self._pending = self._call_later(self._delay, self._scheduled)

    def _scheduled(self):
        self._pending = None
        try:
            self.flush()
        except CheckpointError as exc:
            log.error("%s", exc)

    def flush(self):
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        started = time.monotonic()
        data = strictjson.dumps(self._snapshot(), indent=1, sort_keys=True).encode()
        try:
            write_atomic(self.path, data + b"\n")
        except OSError as exc:
            # The changes already coalesced into this write are still in
            # memory only: try again rather than lose them.
            self.mark_dirty()
            raise CheckpointError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        self.writes += 1
        self.last_duration = time.monotonic() - started
        self.total_duration += self.last_duration
