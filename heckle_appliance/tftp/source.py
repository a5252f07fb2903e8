"""What a TFTP filename means: the files HTTP serves, through the same core calls.

``bootconfig`` and ``install`` are the node's rendered templates,
``dynamic/<path>`` is rendered for the node, ``static/<path>`` and any other
name are files of static/ (a DHCP boot file is usually a bare name such as
``undionly.kpxe``, which the core also finds in the system's iPXE package).
The node is the request's source address: TFTP carries no MAC.
"""

import functools
import logging
import os
from array import array
from bisect import bisect_right

from ..core.appliance import NotAllocated, RenderFailed
from ..core.repository import Forbidden, NotFound
from . import packets

log = logging.getLogger("heckle")

# netascii is converted as it is sent (see Netascii), but finding where each
# block starts takes one pass over the file when it is first asked for, on
# the reactor: only for files of a reasonable size.
NETASCII_LIMIT = 64 << 20


class Refused(Exception):
    """The request cannot be served: ``code`` and ``message`` go in the ERROR."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class Memory:
    """Content rendered for one node, held by its transfer."""

    def __init__(self, data):
        self.size = len(data)
        self._data = memoryview(data)

    def read(self, size, offset):
        return self._data[offset:offset + size]

    def readinto(self, buffers, offset):
        """Fill ``buffers`` in turn from ``offset`` on; returns the bytes copied."""
        data, start = self._data, offset
        for buffer in buffers:
            chunk = data[offset:offset + len(buffer)]
            buffer[:len(chunk)] = chunk
            offset += len(chunk)
            if len(chunk) < len(buffer):
                break
        return offset - start

    def release(self):
        pass


class SharedFile:
    """One open descriptor per version of a file, shared by every transfer of it.

    Blocks are read with pread at the transfer's own offset, so a boot storm
    costs one open and the page cache, and no transfer holds more than the
    block it is sending.
    """

    def __init__(self, cache, path, fd, stat):
        self._cache, self.path, self.fd = cache, path, fd
        self.stamp = FileCache.stamp(stat)
        self.size = stat.st_size
        self.users = 0
        self.netascii = None  # the Netascii layout of this version, once asked for
        # read(size, offset): a partial is called from C, cheaper than a method.
        self.read = functools.partial(os.pread, fd)
        # readinto(buffers, offset): consecutive blocks into their places in
        # a window's send buffer, one syscall.
        if hasattr(os, "preadv"):
            self.readinto = functools.partial(os.preadv, fd)

    def release(self):
        self._cache.release(self)


class FileCache:
    def __init__(self):
        self._open = {}  # path -> SharedFile of the file's current version

    @staticmethod
    def stamp(stat):
        return stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size

    def open(self, path):
        shared = self._open.get(path)
        if shared is None or shared.stamp != self.stamp(os.stat(path)):
            # A changed file gets a fresh descriptor; transfers already running
            # finish on the version they started with.
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            shared = self._open[path] = SharedFile(self, path, fd, os.fstat(fd))
        shared.users += 1
        return shared

    def release(self, shared):
        shared.users -= 1
        if shared.users == 0:
            os.close(shared.fd)
            if self._open.get(shared.path) is shared:
                del self._open[shared.path]


def to_netascii(data):
    """RFC 764: CR becomes CR NUL, LF becomes CR LF."""
    return data.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")


class Netascii:
    """A content in netascii, converted a block at a time as it is sent.

    Each CR and LF of the original takes two bytes in netascii, so a block's
    place in the original is found through checkpoints: the netascii offset
    of every CHUNK-th original byte, an array of 8 bytes per CHUNK built in
    one pass and shared by every transfer of the same file version. A block
    is read and converted from the checkpoint before it, so a transfer holds
    nothing of its own beyond this object, and a read converts at most
    2 x CHUNK + one block of the original.
    """

    CHUNK = 4096
    SCAN = 256 * CHUNK  # bytes read at a time while building the checkpoints

    def __init__(self, content):
        self._content = content
        layout = getattr(content, "netascii", None)
        if layout is None:
            layout = self.layout(content)
            if isinstance(content, SharedFile):
                content.netascii = layout
        self.checkpoints, self.size = layout

    @classmethod
    def layout(cls, content):
        """(checkpoints, netascii size) of ``content``."""
        checkpoints = array("Q")
        converted = 0
        for start in range(0, content.size, cls.SCAN):
            data = bytes(content.read(cls.SCAN, start))
            for at in range(0, len(data), cls.CHUNK):
                checkpoints.append(converted)
                end = at + cls.CHUNK
                converted += (min(end, len(data)) - at + data.count(b"\r", at, end)
                              + data.count(b"\n", at, end))
        return checkpoints, converted

    def read(self, size, offset):
        checkpoints = self.checkpoints
        chunk = bisect_right(checkpoints, offset) - 1
        if chunk < 0:
            return b""  # an empty file
        skip = offset - checkpoints[chunk]
        # Every original byte gives at least one: skip + size of them suffice.
        original = self._content.read(skip + size, chunk * self.CHUNK)
        return to_netascii(bytes(original))[skip:skip + size]

    def release(self):
        self._content.release()


def normalise(filename):
    """Backslashes read as slashes (Windows-style PXE clients), no leading slash."""
    return filename.replace("\\", "/").lstrip("/")


class Source:
    def __init__(self, appliance):
        self.appliance = appliance
        self.files = FileCache()

    def open(self, ip, filename, mode):
        """Content for ``filename`` as the node at ``ip`` should get it; raises Refused."""
        name = normalise(filename)
        try:
            content = self._resolve(ip, name)
        except NotAllocated as exc:
            raise Refused(packets.ACCESS_VIOLATION, str(exc)) from None
        except Forbidden as exc:
            raise Refused(packets.ACCESS_VIOLATION, f"forbidden: {exc}") from None
        except (NotFound, FileNotFoundError) as exc:
            raise Refused(packets.FILE_NOT_FOUND, f"not found: {exc}") from None
        except RenderFailed as exc:
            raise Refused(packets.NOT_DEFINED, f"render error: {exc}") from None
        except OSError as exc:
            raise Refused(packets.ACCESS_VIOLATION, f"cannot read {name}: {exc.strerror}") from None
        if mode == "netascii":
            return self._netascii(name, content)
        return content

    def _resolve(self, ip, name):
        if name in ("bootconfig", "install"):
            return Memory(getattr(self.appliance, name)(ip, None).encode("utf-8"))
        folder, _, rest = name.partition("/")
        if folder == "dynamic":
            return Memory(self.appliance.dynamic(ip, None, rest).encode("utf-8"))
        relpath = rest if folder == "static" else name
        return self.files.open(self.appliance.static(ip, None, relpath))

    def _netascii(self, name, content):
        try:
            if content.size > NETASCII_LIMIT:
                raise Refused(packets.NOT_DEFINED,
                              f"{name}: netascii is served for files up to "
                              f"{NETASCII_LIMIT} bytes; ask for octet mode")
            return Netascii(content)
        except OSError as exc:
            content.release()
            raise Refused(packets.ACCESS_VIOLATION, f"cannot read {name}: {exc.strerror}") from None
        except BaseException:
            content.release()
            raise
