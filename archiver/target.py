"""The restore target: a directory that restore writes into and cannot leave, by construction.

Every path is walked one component at a time from an open descriptor of the target
(``openat`` with ``O_NOFOLLOW | O_DIRECTORY``), so a symlink anywhere above an entry,
whether the restored point put it there or it was already in the target, is never
followed: the entry is refused and named. Files are created with ``O_EXCL | O_NOFOLLOW``.
With ``--overwrite`` an existing entry is replaced by renaming a new one over it inside
the same directory: that replaces a link itself, never what it points to, and a file whose
new content fails its check leaves the old one in place. Mode, owner and times are set on
descriptors, or with ``follow_symlinks=False``. Paths longer than PATH_MAX work, since no
call ever sees more than one component.

The target directory itself is the user's choice and may be reached through a link.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import re
import secrets
import stat
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO, Mapping

from . import processes
from .hazards import path_problem

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMP = ".genarc-restore-"
_LEFTOVER = re.compile(rf"^\.genarc-restore-{processes.TAG}-[0-9a-f]{{12}}$")
_FATAL = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _temp_name() -> str:
    """A name in the target for a file about to replace another; it names this process, so a rerun can remove
    what a killed restore left."""
    return f"{_TEMP}{processes.identity()}-{secrets.token_hex(6)}"


class Refused(Exception):
    """An entry the target cannot take safely; ``reason`` says why. The rest of the restore goes on."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: refused: {reason}")
        self.path, self.reason = path, reason


def stops_everything(exc: OSError) -> bool:
    """A full or read-only disk stops the restore; any other error concerns one entry."""
    return exc.errno in _FATAL


class NewFile:
    """A file being restored: written through ``out``, then put in place by :meth:`commit` or dropped.

    It holds its own descriptor of its folder, so the target's cache of folders can close theirs.
    """

    def __init__(self, dir_fd: int, path: str, name: str, temp: str | None, fd: int) -> None:
        self.dir_fd, self.path, self.name, self.temp = dir_fd, path, name, temp
        self.out: BinaryIO = os.fdopen(fd, "wb", buffering=1 << 16)  # a size given: no isatty() probe per file
        self.holes = False

    def sparse(self) -> "SparseWriter":
        """Where to write the content of a file that had holes: runs of zeros become holes again."""
        self.holes = True
        return SparseWriter(self.out)

    def commit(self, row: Mapping[str, Any], is_root: bool) -> list[str]:
        """Put the file in place with its metadata; returns the kinds of extended attribute it could not get."""
        try:
            self.out.flush()
            if self.holes:
                os.ftruncate(self.out.fileno(), row["size"])  # a hole at the end is not written: it is the length
            unset = _set_metadata(self.out.fileno(), row, is_root)
            self.out.close()
            if self.temp is not None:
                try:
                    os.replace(self.temp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
                except OSError as exc:
                    raise Refused(self.path, f"cannot replace what is in the target ({exc.strerror})") from None
                self.temp = None
        except BaseException:
            self.discard()
            raise
        self._close_dir()
        return unset

    def discard(self) -> None:
        if not self.out.closed:
            self.out.close()
        if self.dir_fd < 0:
            return
        try:
            os.unlink(self.temp or self.name, dir_fd=self.dir_fd)
        except FileNotFoundError:
            pass
        self._close_dir()

    def _close_dir(self) -> None:
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1


_ZEROS = bytes(64 * 1024)


class SparseWriter:
    """Writes a stream, skipping (seeking over) every aligned 64 KiB block of zeros, so a restored sparse file
    takes the room its data takes, not its length. The caller sets the length at the end."""

    BLOCK = 64 * 1024

    def __init__(self, out: BinaryIO) -> None:
        self.out, self.pending = out, b""

    def write(self, data: bytes | bytearray) -> int:
        buffer = self.pending + bytes(data)
        whole = len(buffer) - len(buffer) % self.BLOCK
        view = memoryview(buffer)
        for start in range(0, whole, self.BLOCK):
            block = view[start:start + self.BLOCK]
            if block == _ZEROS:
                self.out.seek(self.BLOCK, os.SEEK_CUR)
            else:
                self.out.write(block)
        self.pending = buffer[whole:]
        return len(data)

    def flush(self) -> None:
        if self.pending:
            self.out.write(self.pending)
            self.pending = b""
        self.out.flush()


def _set_metadata(fd: int, row: Mapping[str, Any], is_root: bool) -> list[str]:
    """Owner (as root), then extended attributes (chown clears security.capability), then mode (chown clears
    set-id bits; an ACL's mask follows the mode), then times: all on the descriptor. Returns the kinds of
    extended attribute that could not be set, for the caller to name once per kind."""
    if is_root and row["uid"] is not None:
        try:
            os.fchown(fd, row["uid"], row["gid"])
        except OSError:
            pass
    unset = set_xattrs(fd, row["xattrs"] if "xattrs" in row.keys() else None)
    os.fchmod(fd, row["mode"])
    os.utime(fd, ns=(row["mtime_ns"], row["mtime_ns"]))
    return unset


def xattr_kind(name: str) -> str:
    return "POSIX ACLs" if name.startswith("system.posix_acl") else f"{name.split('.', 1)[0]}.* attributes"


def set_xattrs(fd: int, stored: str | None) -> list[str]:
    """Set the extended attributes a row records; the ones refused (not root, not supported) come back by kind."""
    if not stored:
        return []
    unset = []
    for name, value in json.loads(stored).items():
        try:
            os.setxattr(fd, name, base64.b64decode(value))
        except OSError as exc:
            unset.append(f"{xattr_kind(name)} ({exc.strerror})")
    return unset


class Target:
    def __init__(self, root: Path, *, overwrite: bool, is_root: bool, cache: int = 64) -> None:
        self.root, self.overwrite, self.is_root = root, overwrite, is_root
        root.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._dirs: OrderedDict[tuple[str, ...], int] = OrderedDict()
        self._cache = cache
        self._seen: set[str] = set()
        self._swept(self.fd, "")

    def close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()
        os.close(self.fd)

    def __enter__(self) -> "Target":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- walking -----------------------------------------------------------------------------------
    @staticmethod
    def _parts(name: str) -> list[str]:
        problem = path_problem(name)
        if problem is not None:
            raise Refused(name, f"the point holds {problem}")
        return name.split("/")

    def _open_dir(self, name: str, parts: list[str], create: bool) -> int:
        """The descriptor of the directory ``parts`` (a prefix of ``name``), walked without following links."""
        key = tuple(parts)
        if key in self._dirs:
            self._dirs.move_to_end(key)
            return self._dirs[key]
        fd = self.fd
        for depth in range(len(parts)):
            prefix = tuple(parts[:depth + 1])
            if prefix in self._dirs:
                fd = self._dirs[prefix]
                continue
            fd = self._open_child(name, fd, parts[depth], "/".join(prefix), create)
            self._remember(prefix, fd)
        return fd

    def _open_child(self, name: str, parent: int, component: str, shown: str, create: bool) -> int:
        try:
            return self._swept(os.open(component, _DIR, dir_fd=parent), shown)
        except FileNotFoundError:
            if not create:
                raise
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            if not (create and self.overwrite):
                raise Refused(name, f"{shown} is a symlink or a file in the target, not a directory "
                                    "(--overwrite replaces it)") from None
            os.unlink(component, dir_fd=parent)  # the link or file itself, never what a link points to
        try:
            os.mkdir(component, 0o700, dir_fd=parent)
        except FileExistsError:
            pass  # made meanwhile: the open below still refuses to follow a link
        return os.open(component, _DIR, dir_fd=parent)

    def _swept(self, fd: int, shown: str) -> int:
        """With --overwrite, an existing directory loses the temporary files a killed restore left in it."""
        if self.overwrite and shown not in self._seen:
            self._seen.add(shown)
            try:
                names = os.listdir(fd)
            except OSError:
                return fd
            for entry in names:
                match = _LEFTOVER.match(entry)
                if match and not processes.alive(processes.Identity.from_match(match)):
                    try:
                        os.unlink(entry, dir_fd=fd)
                    except OSError:
                        pass
        return fd

    def _remember(self, key: tuple[str, ...], fd: int) -> None:
        self._dirs[key] = fd
        while len(self._dirs) > self._cache:
            _, old = self._dirs.popitem(last=False)
            os.close(old)

    def _parent(self, name: str, create: bool = True) -> tuple[int, str]:
        parts = self._parts(name)
        return (self._open_dir(name, parts[:-1], create) if len(parts) > 1 else self.fd), parts[-1]

    # -- what a restore does -----------------------------------------------------------------------
    def empty(self) -> bool:
        """Nothing at all is in the target yet (whatever appears later still meets O_EXCL, and is named)."""
        with os.scandir(self.fd) as entries:
            return next(entries, None) is None

    def exists(self, name: str) -> bool:
        """Whether something already sits at ``name`` (a link counts; a path under a link does not)."""
        try:
            parent, last = self._parent(name, create=False)
            os.stat(last, dir_fd=parent, follow_symlinks=False)
        except (OSError, Refused):  # not there, or under a link (refused when written), or unreadable
            return False
        return True

    def make_dir(self, name: str) -> None:
        """A directory, with every directory above it: a link or file in the way is refused (replaced with --overwrite)."""
        self._open_dir(name, self._parts(name), create=True)

    def make_symlink(self, name: str, target: bytes, row: Mapping[str, Any]) -> None:
        parent, last = self._parent(name)
        try:
            os.symlink(target, last, dir_fd=parent)
        except FileExistsError:
            if not self.overwrite:
                raise Refused(name, "something of that name is already in the target (--overwrite replaces it)")
            temp = _temp_name()
            os.symlink(target, temp, dir_fd=parent)
            try:
                os.replace(temp, last, src_dir_fd=parent, dst_dir_fd=parent)
            except OSError as exc:
                os.unlink(temp, dir_fd=parent)
                raise Refused(name, f"cannot replace what is in the target ({exc.strerror})") from None
        if self.is_root and row["uid"] is not None:
            try:
                os.chown(last, row["uid"], row["gid"], dir_fd=parent, follow_symlinks=False)
            except OSError:
                pass
        os.utime(last, ns=(row["mtime_ns"], row["mtime_ns"]), dir_fd=parent, follow_symlinks=False)

    def new_file(self, name: str) -> NewFile:
        parent, last = self._parent(name)
        try:
            fd, temp = os.open(last, _NEW_FILE, 0o600, dir_fd=parent), None
        except FileExistsError:
            if not self.overwrite:
                raise Refused(name, "something of that name is already in the target (--overwrite replaces it)")
            temp = _temp_name()
            fd = os.open(temp, _NEW_FILE, 0o600, dir_fd=parent)
        return NewFile(os.dup(parent), name, last, temp, fd)

    def hard_link(self, name: str, existing: str) -> None:
        """``name`` as another name of the file already restored at ``existing``. Neither path is walked through
        a link, and a link sitting at ``existing`` is linked itself, never followed (linkat without
        AT_SYMLINK_FOLLOW), so nothing outside the target is ever reached."""
        try:
            source_dir, source = self._parent(existing, create=False)
            kind = os.stat(source, dir_fd=source_dir, follow_symlinks=False).st_mode
        except FileNotFoundError:
            raise Refused(name, f"not restored, because its other name {existing} was not") from None
        if not stat.S_ISREG(kind):
            raise Refused(name, f"its other name {existing} is not a file in the target")
        parent, last = self._parent(name)
        try:
            os.link(source, last, src_dir_fd=source_dir, dst_dir_fd=parent, follow_symlinks=False)
        except FileExistsError:
            if not self.overwrite:
                raise Refused(name, "something of that name is already in the target (--overwrite replaces it)")
            temp = _temp_name()
            os.link(source, temp, src_dir_fd=source_dir, dst_dir_fd=parent, follow_symlinks=False)
            try:
                os.replace(temp, last, src_dir_fd=parent, dst_dir_fd=parent)
            except OSError as exc:
                os.unlink(temp, dir_fd=parent)
                raise Refused(name, f"cannot replace what is in the target ({exc.strerror})") from None

    def empty_file(self, name: str, row: Mapping[str, Any]) -> list[str]:
        made = self.new_file(name)
        return made.commit(row, self.is_root)

    def finish_dir(self, name: str, row: Mapping[str, Any]) -> list[str]:
        """A directory's own mode, owner, extended attributes and times, set once everything inside it is written."""
        fd = self._open_dir(name, self._parts(name), create=False)
        return _set_metadata(fd, row, self.is_root)
