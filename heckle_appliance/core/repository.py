"""The operator's repository folder: layout checks, images, variables, paths.

Everything is read from disk on demand (a stat per request) so that images
pushed into ``images/`` or edited templates take effect on the next request
without a restart.
"""

import fcntl
import json
import logging
import os
from dataclasses import dataclass

log = logging.getLogger("heckle")

REQUIRED_DIRS = ("static", "dynamic", "images")
REQUIRED_IMAGE_FILES = ("bootconfig", "status")
IMAGE_FILES = ("bootconfig", "status", "install")


class RepositoryError(Exception):
    """The repository cannot be used as it is; the message says why and where."""


class NotFound(Exception):
    """No such file (HTTP 404, TFTP error 1)."""


class Forbidden(Exception):
    """The path leaves its folder (HTTP 403, TFTP error 2)."""


@dataclass(frozen=True)
class Image:
    name: str
    path: str
    problem: str | None  # None when the image can be allocated

    @property
    def valid(self):
        return self.problem is None


def _json_error(path, exc):
    return RepositoryError(
        f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")


def read_static_vars(path):
    """Parse staticVars.json; a missing file means no variables."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise RepositoryError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise _json_error(path, exc) from None
    if not isinstance(data, dict):
        text = raw.decode("utf-8")
        start = len(text) - len(text.lstrip())  # where the value begins
        line = text.count("\n", 0, start) + 1
        column = start - text.rfind("\n", 0, start)
        raise RepositoryError(f"{path}: line {line}, column {column}: top level must be an "
                              f"object, not {type(data).__name__}")
    return data


class Repository:
    def __init__(self, root):
        self.root = os.path.abspath(root)
        self.data_path = os.path.join(self.root, "data.json")
        self.log_path = os.path.join(self.root, "flunky.log")
        self.vars_path = os.path.join(self.root, "staticVars.json")
        self._vars = None
        self._vars_stamp = None

    def check(self):
        """Fail fast, naming every missing folder and any staticVars.json error."""
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise RepositoryError(f"repository {self.root} is not a folder")
        if not os.path.isdir(self.root):
            raise RepositoryError(f"repository {self.root} does not exist "
                                  f"(create one with: flunkymaster --init {self.root})")
        missing = [d for d in REQUIRED_DIRS if not os.path.isdir(os.path.join(self.root, d))]
        if missing:
            raise RepositoryError(
                f"repository {self.root} lacks {', '.join(d + '/' for d in missing)} "
                f"(flunkymaster --init {self.root} creates the skeleton)")
        self.static_vars()

    # -- staticVars.json --------------------------------------------------------

    def static_vars(self):
        """The variables of staticVars.json, re-read when the file changes.

        An edit that breaks the file while running is logged and the last good
        variables stay in force, so a typo does not break nodes mid-install.
        """
        try:
            st = os.stat(self.vars_path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
            if self._vars_stamp is not None:
                # Most likely an editor's save in progress: as with a broken file.
                log.error("%s was removed; keeping the previous variables (an empty {} "
                          "file clears them)", self.vars_path)
                self._vars_stamp = None
                return dict(self._vars)
        if stamp != self._vars_stamp or self._vars is None:
            try:
                self._vars = read_static_vars(self.vars_path)
            except RepositoryError as exc:
                if self._vars is None:
                    raise
                log.error("%s; keeping the previous variables", exc)
            self._vars_stamp = stamp
        return dict(self._vars)

    # -- images -------------------------------------------------------------------

    def image(self, name):
        """The image called ``name``, or None if there is no such folder."""
        if not name or name.startswith(".") or "/" in name or "\\" in name or "\0" in name:
            return None
        path = os.path.join(self.root, "images", name)
        if not os.path.isdir(path):
            return None
        missing = [f for f in REQUIRED_IMAGE_FILES if not os.path.isfile(os.path.join(path, f))]
        problem = f"missing {' and '.join(missing)}" if missing else None
        return Image(name, path, problem)

    def images(self):
        folder = os.path.join(self.root, "images")
        names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
        return [img for img in map(self.image, names) if img is not None]

    def image_file(self, image_name, which):
        """Path of one of an image's templates (bootconfig, status, install)."""
        if which not in IMAGE_FILES:
            raise NotFound(which)
        image = self.image(image_name)
        if image is None:
            raise NotFound(f"image {image_name!r} does not exist")
        path = os.path.join(image.path, which)
        if not os.path.isfile(path):
            raise NotFound(f"image {image_name!r} has no {which}")
        return path

    # -- static/ and dynamic/ ---------------------------------------------------

    @staticmethod
    def clean(folder, relpath):
        """``relpath`` (already URL-decoded) as a list of safe components.

        Any ``..`` component, absolute path or NUL is refused outright:
        there is no legitimate reason for a node to send one.
        """
        parts = relpath.replace("\\", "/").split("/")
        if "\0" in relpath or ".." in parts or relpath.startswith("/"):
            raise Forbidden(f"{folder}/{relpath}: path leaves {folder}/")
        parts = [p for p in parts if p not in ("", ".")]
        if not parts:
            raise NotFound(f"{folder}/: is a folder")
        return parts

    def confine(self, folder, relpath):
        """Absolute path of ``relpath`` inside ``static/`` or ``dynamic/``.

        A symlink is followed only if its target stays inside the folder.
        """
        parts = self.clean(folder, relpath)
        base = os.path.realpath(os.path.join(self.root, folder))
        real = os.path.realpath(os.path.join(base, *parts))
        if os.path.commonpath([base, real]) != base:
            raise Forbidden(f"{folder}/{relpath}: resolves outside {folder}/")
        if not os.path.isfile(real):
            raise NotFound(f"{folder}/{'/'.join(parts)}")
        return real

    def lock(self):
        """Take the repository for this process; an open file that holds the lock.

        Two appliances on one repository would overwrite each other's
        data.json, so the second one refuses to start.
        """
        path = os.path.join(self.root, ".flunkymaster.lock")
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RepositoryError(f"repository {self.root} is in use by another flunkymaster "
                                  f"(pid {holder})") from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return handle

    def relative(self, path):
        """``path`` relative to the repository, for messages."""
        return os.path.relpath(path, self.root)


def init_skeleton(root):
    """Create what an empty repository at ``root`` lacks (existing files are
    kept); returns the names created. Raises RepositoryError saying why not."""
    if os.path.exists(root) and not os.path.isdir(root):
        raise RepositoryError(f"cannot create a repository in {root}: not a folder")
    created = []
    try:
        for folder in REQUIRED_DIRS:
            path = os.path.join(root, folder)
            if not os.path.isdir(path):
                os.makedirs(path)
                created.append(folder + "/")
        vars_path = os.path.join(root, "staticVars.json")
        if not os.path.exists(vars_path):
            with open(vars_path, "w") as handle:
                handle.write("{}\n")
            created.append("staticVars.json")
    except OSError as exc:
        raise RepositoryError(f"cannot create a repository in {root}: "
                              f"{exc.strerror} ({exc.filename})") from None
    return created
