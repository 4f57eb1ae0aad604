"""A repository in a local directory (``file://`` or a plain path).

Objects are written to a private temporary name with exclusive create, fsynced,
then linked into place with ``link(2)``, which fails if the key exists: a key is
never overwritten. Objects are read-only files. This store has no lock: anyone
with the machine's rights can remove the files, so it is not ransomware-proof.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from ..errors import IntegrityError, LocalIOError, ObjectExists, ObjectNotFound, PermissionDenied, StoreError
from .base import Capabilities, ObjectInfo, PutSource, Retention, SpoolFile
from .inspect import KeyRights, LockSettings

_TMP_MARK = ".genarc-tmp-"


_NO_KERNEL_COPY = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF, errno.EPERM)


def _copy(src, out) -> None:
    """Copy an open file to another from their current positions, in the kernel where it can
    (``copy_file_range``: no pass through Python's buffers, a reflink on file systems that share extents),
    else through Python. A disk that fills up still raises."""
    copy_range = getattr(os, "copy_file_range", None)
    if copy_range is not None:
        out.flush()
        try:
            while copy_range(src.fileno(), out.fileno(), 1 << 30):
                pass
            return
        except OSError as exc:
            if exc.errno not in _NO_KERNEL_COPY:
                raise
            # Nothing, or a whole number of chunks, was copied: both positions are where they should be.
    shutil.copyfileobj(src, out, 1 << 20)


def _link_object(path: Path, fd: int, dest: Path) -> bool:
    """``dest`` as another name of the object at ``path`` (open as ``fd``), when it is that very file and no
    link; False when it cannot be linked (another file system: EXDEV; the caller copies)."""
    try:
        here, opened = os.stat(path, follow_symlinks=False), os.fstat(fd)
        if not stat.S_ISREG(here.st_mode) or (here.st_ino, here.st_dev) != (opened.st_ino, opened.st_dev):
            return False
        os.link(path, dest, follow_symlinks=False)
        return True
    except OSError:
        return False


def _link_in(source: Path, tmp: Path) -> bool:
    """Put a spool file in place of the empty ``tmp`` by a hard link instead of a copy, when both are on one file
    system: made read-only and synced first, and only a file with no other name (the caller deletes its own
    afterwards, and nothing writes to it again). False when it cannot be linked: the caller copies."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False  # copying names the trouble, if there is one
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_dev != os.stat(tmp.parent).st_dev:
            return False
        os.fchmod(fd, 0o444)
        os.fsync(fd)
        _replace_with_link(source, tmp)
        return True
    except OSError as exc:
        if exc.errno in _NO_KERNEL_COPY or exc.errno in (errno.EMLINK, errno.EACCES):
            return False
        raise
    finally:
        os.close(fd)


def _linked(source: Path, tmp: Path) -> Path:
    """A new name for ``source`` beside ``tmp`` (a private temporary name, like tmp's own)."""
    name = tmp.with_name(f"{tmp.name}-link")
    os.link(source, name, follow_symlinks=False)
    return name


def _replace_with_link(source: Path, tmp: Path) -> None:
    name = _linked(source, tmp)
    try:
        os.replace(name, tmp)
    except OSError:
        name.unlink(missing_ok=True)
        raise


def _local_error(exc: OSError, what: str) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LocalIOError(f"The repository disk is full while writing {what}; free space and rerun.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDenied(f"Permission denied writing {what} ({exc.strerror}); check the repository's permissions.")
    return StoreError(f"Cannot write {what}: {exc.strerror}.")


class LocalStore:
    capabilities = Capabilities(
        server_side_copy=True,
        conditional_put=True,
        ransomware_safe=False,
        description="local directory (no object lock: not ransomware-proof)",
        unprotected="a local directory has no object lock and no lifecycle: nothing in it is locked or expires by "
                    "itself, and anyone with this machine's rights can delete it; use S3 with Object Lock or B2 with "
                    "File Lock for ransomware-proof backups",
    )

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def inspector(self) -> "LocalInspector":
        return LocalInspector()

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if (not key or any(p in ("", ".", "..") or len(os.fsencode(p)) > 255 for p in parts) or _TMP_MARK in key
                or "\x00" in key):
            raise StoreError(f"Invalid object key {key!r}.")
        return self.root.joinpath(*parts)

    def put(self, key: str, source: PutSource, *, sha256: str, retention: Retention | None = None) -> ObjectInfo:
        final = self._path(key)
        if final.exists():
            raise ObjectExists(f"Object {key} already exists; genarc never overwrites a key.")
        tmp = final.with_name(f"{final.name}{_TMP_MARK}{secrets.token_hex(6)}")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            try:
                with os.fdopen(fd, "wb") as out:
                    if isinstance(source, bytes):
                        out.write(source)
                    elif not (isinstance(source, SpoolFile) and _link_in(source, tmp)):
                        with open(source, "rb") as src:
                            _copy(src, out)
                    out.flush()
                    os.fsync(out.fileno())
                try:
                    os.link(tmp, final)  # no-clobber: fails with EEXIST
                except FileExistsError:
                    raise ObjectExists(f"Object {key} already exists; genarc never overwrites a key.") from None
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                        raise
                    if final.exists():  # file system without hard links
                        raise ObjectExists(f"Object {key} already exists; genarc never overwrites a key.") from None
                    os.rename(tmp, final)
            finally:
                if tmp.exists():
                    tmp.unlink()  # our own private temporary name, never an object
            dirfd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dirfd)
            finally:
                os.close(dirfd)
        except OSError as exc:
            raise _local_error(exc, f"object {key}") from exc
        return self.stat(key)

    def _open(self, key: str):
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise ObjectNotFound(f"Object {key} is missing from the repository.") from None
        except OSError as exc:
            raise StoreError(f"Cannot read object {key}: {exc.strerror}.") from None

    def get(self, key: str, *, version_id: str | None = None, byte_range: tuple[int, int] | None = None) -> bytes:
        with self._open(key) as fh:
            if byte_range is None:
                return fh.read()
            start, end = byte_range
            fh.seek(start)
            return fh.read(max(0, end - start))

    def download(self, key: str, dest: Path, *, version_id: str | None = None) -> None:
        """``dest`` becomes a new name of the object when both are on one file system (read-only, as every
        object; nothing is copied), else a copy. Whatever was at ``dest`` is replaced, never written into: it
        may be an earlier download, that is, an object."""
        with self._open(key) as src:
            try:
                dest.unlink(missing_ok=True)
                if _link_object(self._path(key), src.fileno(), dest):
                    return
                with open(dest, "xb") as out:
                    _copy(src, out)
            except OSError as exc:
                raise _local_error(exc, f"the local copy of {key}") from exc

    def _info(self, key: str, path: Path) -> ObjectInfo:
        st = path.stat()
        return ObjectInfo(key=key, size=st.st_size,
                          modified=datetime.fromtimestamp(st.st_mtime, timezone.utc))

    def stat(self, key: str, *, version_id: str | None = None) -> ObjectInfo:
        path = self._path(key)
        try:
            return self._info(key, path)
        except FileNotFoundError:
            raise ObjectNotFound(f"Object {key} is missing from the repository.") from None
        except OSError as exc:
            raise StoreError(f"Cannot read object {key}: {exc.strerror}.") from None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Walk only the directory that can hold the prefix, then filter by key.
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*head.split("/")) if head else self.root
        if not start.is_dir():
            return
        found = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            for name in filenames:
                if _TMP_MARK in name:
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append((key, full))
        for key, full in sorted(found):
            try:
                yield self._info(key, full)
            except FileNotFoundError:
                continue

    def list_versions(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.list(prefix)

    def folders(self, prefix: str) -> Iterator[str]:
        start = self.root.joinpath(*prefix.strip("/").split("/")) if prefix.strip("/") else self.root
        try:
            names = sorted(entry.name for entry in os.scandir(start) if entry.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            return iter(())
        return iter(names)

    def copy(self, src_key: str, dst_key: str, *, src_version_id: str | None = None,
             sha256: str, retention: Retention | None = None, size: int | None = None) -> ObjectInfo:
        """The local server-side copy: a hard link, like a reflink costs no I/O.

        Objects are read-only and never written in place, so two keys may share the bytes;
        removing one key (the lifecycle) leaves the other whole. Where links are not possible
        (another file system, or none at all), a plain copy through put().
        """
        source, final = self._path(src_key), self._path(dst_key)
        if not source.exists():
            raise ObjectNotFound(f"Object {src_key} is missing from the repository.")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.link(source, final)  # no-clobber: fails if the key exists
        except FileExistsError:
            raise ObjectExists(f"Object {dst_key} already exists; genarc never overwrites a key.") from None
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise _local_error(exc, f"object {dst_key}") from exc
            return self.put(dst_key, source, sha256=sha256, retention=retention)
        return self.stat(dst_key)

    def ensure_lock(self, key: str, *, version_id: str | None, retention: Retention) -> ObjectInfo:
        raise IntegrityError(f"{key} cannot be locked: a local repository has no locks.")  # runs never ask for one


class LocalInspector:
    """A directory has no versions, no lock and no lifecycle, and anyone with the machine's rights can delete."""

    kind = "local"
    prefix = ""

    def versioning(self) -> bool:
        return False

    def lock_settings(self) -> LockSettings:
        return LockSettings(False)

    def lifecycle_rules(self) -> None:
        return None

    def key_rights(self) -> KeyRights | None:
        return None

    def can_delete(self, under: str = "") -> bool:
        return True

    def probe_conditional_put(self) -> None:
        return None  # link(2) is create-only by nature

    def trust_conditional_put(self, honoured: bool) -> None:
        pass

    def probe_retention_cap(self, until: datetime, under: str) -> None:
        return None  # no policy condition caps a lock here

    def public_objects(self, keys: list[str]) -> list[tuple[str, str]]:
        return []  # file modes are the local disk's business
