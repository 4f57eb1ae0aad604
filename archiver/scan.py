"""Walking the sources: excludes, one_file_system, and the stat data change detection uses.

Exclude patterns are globs:
- a pattern without ``/`` matches a name at any depth (``*.tmp``, ``.cache``);
- a pattern starting with ``/`` matches the absolute path (``/home/*/Downloads``);
- any other pattern matches the path relative to its source (``build/**``);
- ``**`` spans directories, ``*`` and ``?`` stay within one name, ``[...]`` is a class;
- a backslash makes the character after it literal (``\\*``, ``\\[``, ``\\\\``), as does a class (``[*]``).
A matching directory is skipped with everything below it.
"""

from __future__ import annotations

import base64
import errno
import functools
import json
import os
import re
import stat
import warnings
from typing import Callable, Generator, Iterator, NamedTuple

from .config import JobConfig
from .errors import ConfigError


class Entry(NamedTuple):
    """One scanned entry (a tuple: the scan makes one per file of every run, and a tuple is five times cheaper to
    make than a frozen dataclass)."""

    path: str  # absolute, as the OS names it (undecodable bytes kept by surrogateescape)
    type: str  # "file" | "dir" | "symlink"
    size: int
    mtime_ns: int
    mode: int  # permission bits only
    uid: int
    gid: int
    dev: int
    ino: int
    target: str | None = None
    ctime_ns: int = 0  # compared to notice a rewrite that kept size and mtime (touch -r, rsync -t, ransomware)
    nlink: int = 1  # a file with more than one name is restored with all of them as hard links
    xattrs: str | None = None  # extended attributes (POSIX ACLs among them): canonical JSON {name: base64}

    @property
    def name(self) -> str:
        """The path as stored in manifests: absolute, without the leading slash."""
        return self.path.lstrip("/")


_KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink"}


def entry_type(st: os.stat_result) -> str | None:
    """"file", "dir" or "symlink"; None for what genarc does not keep (devices, sockets, FIFOs)."""
    return _KINDS.get(stat.S_IFMT(st.st_mode))


def entry_from_stat(path: str, st: os.stat_result, kind: str, target: str | None = None,
                    xattrs: str | None = None) -> Entry:
    """The entry of ``st``, whose :func:`entry_type` the caller has taken (``kind``)."""
    return Entry(path, kind, st.st_size if kind == "file" else 0, st.st_mtime_ns, st.st_mode & 0o7777,
                 st.st_uid, st.st_gid, st.st_dev, st.st_ino, target, st.st_ctime_ns, st.st_nlink, xattrs)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """The compiled, anchored regular expression for one glob (the rules in this module's docstring).

    Raises ValueError with a sentence for a glob that cannot match anything as written (``[z-a]``).
    """
    try:
        with warnings.catch_warnings():  # "[[:alpha:]]" reads as a nested set to Python: a plain class here
            warnings.simplefilter("ignore", FutureWarning)
            return re.compile(_translate(pattern) + r"\Z", re.DOTALL)
    except re.error as exc:
        raise ValueError(f"{pattern!r} is not a valid pattern ({exc.msg})") from None


def _translate(pattern: str) -> str:
    out, i, n = [], 0, len(pattern)
    while i < n:
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 1
        elif c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("!", "]") else i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class ExcludeMatcher:
    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.by_name, self.absolute, self.relative = [], [], []
        for pattern in patterns:
            trimmed = pattern.rstrip("/") or pattern
            try:
                regex = glob_regex(trimmed)
            except ValueError as exc:
                raise ConfigError(f"exclude {exc}; fix it in the job file.") from None
            if "/" not in trimmed:
                self.by_name.append(regex)
            elif trimmed.startswith("/"):
                self.absolute.append(regex)
            else:
                self.relative.append(regex)

    @property
    def active(self) -> bool:
        return bool(self.by_name or self.absolute or self.relative)

    def excluded(self, path: str, root: str) -> bool:
        if not self.active:
            return False
        name = path.rsplit("/", 1)[-1]
        if any(r.match(name) for r in self.by_name) or any(r.match(path) for r in self.absolute):
            return True
        if self.relative:
            relative = os.path.relpath(path, root)
            return any(r.match(relative) for r in self.relative)
        return False


Report = Callable[[str, str], None]
"""report(level, message): level is "warning" (makes the run partial) or "note"."""


def check_sources(job: JobConfig, config_path: str) -> None:
    for source in job.sources:
        if not os.path.isdir(source):
            what = "is not a directory" if os.path.exists(source) else "does not exist"
            raise ConfigError(f"{config_path}: jobs.{job.name}.sources: {source} {what}.")


_BELOW_ROOT = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_below(root: str, path: str) -> int:
    """A descriptor of the folder ``path`` (``root`` or below it), reached without following any link below ``root``.

    The source root itself is the user's choice and may be reached through a link. Below it,
    every component is opened with ``O_NOFOLLOW``: a folder that has become a link since it was
    listed is refused (OSError), never followed out of the source. No call sees more than one
    component, so paths longer than PATH_MAX work.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    relative = os.path.relpath(path, root)
    for part in ([] if relative == "." else relative.split("/")):
        try:
            child = os.open(part, _BELOW_ROOT, dir_fd=fd)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise OSError(exc.errno, "a folder on its path is no longer a folder (a link or file now)") from None
            raise
        os.close(fd)
        fd = child
    return fd


def walk(job: JobConfig, report: Report) -> Iterator[Entry]:
    """Yield every entry to back up, parents before children, in a stable order.

    Each folder is listed through a descriptor reached by :func:`open_below`, and its entries are
    read relative to it, so a folder swapped for a link during the scan is never followed.
    """
    matcher = ExcludeMatcher(job.exclude)
    for source in job.sources:
        root = os.path.normpath(source)
        try:
            root_st = os.stat(root)
        except OSError as exc:
            report("warning", f"cannot read source {root}: {exc.strerror}; it is not in this restore point")
            continue
        if entry_type(root_st) != "dir":
            report("warning", f"source {root} is not a directory; skipped")
            continue
        yield entry_from_stat(root, root_st, "dir", xattrs=read_xattrs(root, report))
        stack = [root]
        while stack:
            directory = stack.pop()
            try:
                fd = open_below(root, directory)
            except FileNotFoundError:
                report("warning", f"directory {directory} vanished during the scan")
                continue
            except OSError as exc:
                report("warning", f"cannot read directory {directory}: {exc.strerror}; its contents are not in this "
                                  "restore point")
                continue
            try:
                subdirs = yield from _list(fd, directory, root, root_st.st_dev, job, matcher, report)
            finally:
                os.close(fd)
            stack.extend(reversed(subdirs))


_CONFIRM_EVERY = 256  # files asked for attributes by path between two checks that their folder's path leads to it


def _list(fd: int, directory: str, root: str, root_dev: int, job: JobConfig, matcher: "ExcludeMatcher",
          report: Report) -> Generator[Entry, None, list[str]]:
    """The entries of one open folder, in name order; returns its subfolders to descend into.

    Most files have no extended attributes, and one call by path says so (the cheapest way to ask). It is
    trusted when the folder's path led to this very folder before and after the calls for a run of files
    (:func:`_leads_to`): a folder above swapped meanwhile would answer for other files, and the entries' ACLs
    would be lost without a word. Otherwise those files are asked again through the folder's descriptor."""
    try:
        names = sorted(os.listdir(fd), key=os.fsencode)
    except OSError as exc:
        report("warning", f"cannot read directory {directory}: {exc.strerror}; its contents are not in this "
                          "restore point")
        return []
    subdirs: list[str] = []
    prefix = directory if directory.endswith("/") else directory + "/"  # os.path.join, for a name without "/"
    excluding = matcher if matcher.active else None
    folder = os.fstat(fd)
    for start in range(0, len(names), _CONFIRM_EVERY):
        by_path = _leads_to(directory, folder)
        items: list[Entry | tuple[str, str]] = []  # entries, and what was reported among them, until confirmed
        held: Report = lambda level, message: items.append((level, message))  # noqa: E731
        asked: list[int] = []  # the entries whose "none" came by path
        for name in names[start:start + _CONFIRM_EVERY]:
            path = prefix + name
            try:
                entry, unconfirmed = _child(fd, name, path, excluding, root, held, by_path)
            except (ValueError, UnicodeError) as exc:  # one odd name never stops a run
                held("warning", f"{path} cannot be read ({exc}); it is not in this restore point")
                continue
            if entry is not None:
                if unconfirmed:
                    asked.append(len(items))
                items.append(entry)
        if asked and not _leads_to(directory, folder):
            for i in asked:
                e = items[i]
                assert isinstance(e, Entry)
                items[i] = e._replace(xattrs=_xattrs_through(fd, e.path[len(prefix):], (e.ino, e.dev), e.path, report))
        for item in items:
            if not isinstance(item, Entry):
                report(*item)
                continue
            yield item
            if item.type == "dir":
                if job.one_file_system and item.dev != root_dev:
                    report("note", f"not crossing into another file system at {item.path}")
                    continue
                subdirs.append(item.path)
    return subdirs


def _leads_to(directory: str, folder: os.stat_result) -> bool:
    """Whether ``directory``'s path leads to ``folder`` now (through links or not: the calls by path go the
    same way)."""
    try:
        now = os.stat(directory)
    except OSError:
        return False
    return (now.st_ino, now.st_dev) == (folder.st_ino, folder.st_dev)


def _child(fd: int, name: str, path: str, matcher: "ExcludeMatcher | None", root: str, report: Report,
           by_path: bool = False) -> tuple[Entry | None, bool]:
    """One folder entry as an Entry (None when it is excluded (``matcher``: None when nothing is), gone,
    unreadable or special, reported), and whether it is a file whose attributes were asked by path and found to
    be none, which its folder's check is still to confirm (only with ``by_path``)."""
    if matcher is not None and matcher.excluded(path, root):
        return None, False
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        target = os.readlink(name, dir_fd=fd) if stat.S_ISLNK(st.st_mode) else None
    except FileNotFoundError:
        report("warning", f"{path} vanished during the scan")
        return None, False
    except OSError as exc:
        report("warning", f"cannot stat {path}: {exc.strerror}")
        return None, False
    kind = entry_type(st)
    if kind is None:
        report("note", f"skipped special file {path} (device, socket or FIFO)")
        return None, False
    if kind == "symlink":
        return entry_from_stat(path, st, kind, target), False
    if by_path and kind == "file" and _none_by_path(path):
        return entry_from_stat(path, st, kind), True
    return entry_from_stat(path, st, kind, xattrs=_xattrs_at(fd, name, st, path, report)), False


def _none_by_path(path: str) -> bool:
    """Whether a call by path says the entry there has no extended attributes."""
    try:
        return not os.listxattr(path, follow_symlinks=False)
    except OSError:
        return False


def _xattrs_at(dir_fd: int, name: str, st: os.stat_result, path: str, report: Report) -> str | None:
    """The attributes of the very entry that was stat'ed in its folder as ``st``.

    None when a call by path says there are none, and a stat by path confirms it came from that entry (a folder
    above swapped meanwhile would answer for another file, and the entry's ACLs would be lost without a word);
    otherwise :func:`_xattrs_through` the folder's descriptor."""
    if _none_by_path(path):
        try:
            now = os.stat(path, follow_symlinks=False)
            if (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev):
                return None
        except OSError:
            pass
    return _xattrs_through(dir_fd, name, (st.st_ino, st.st_dev), path, report)


def _xattrs_through(dir_fd: int, name: str, stated: tuple[int, int], path: str, report: Report) -> str | None:
    """The attributes of the entry ``name`` in the folder ``dir_fd`` whose stat gave ``stated`` (inode, device):
    reached through an O_PATH descriptor (no folder above it is resolved again, so one swapped for a
    link meanwhile cannot lend another file's attributes); by path only where /proc cannot show the descriptor.
    Only an entry that has some is opened and checked to be the one stat'ed."""
    if _proc_shows_descriptors():
        try:
            if not os.listxattr(f"/proc/self/fd/{dir_fd}/{name}", follow_symlinks=False):
                return None
        except OSError:
            return None  # none, a file system without them, or gone (as read_xattrs answers)
    try:
        opened = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        now = os.fstat(opened)
        if (now.st_ino, now.st_dev) != stated:
            return None  # replaced since the stat: its attributes are not this entry's
        if _proc_shows_descriptors():
            return read_xattrs(f"/proc/self/fd/{opened}", report, shown=path, follow=True)
        return read_xattrs(path, report)
    finally:
        os.close(opened)


@functools.cache
def _proc_shows_descriptors() -> bool:
    """Whether /proc/self/fd names this process's open descriptors (asked once: it holds for the process)."""
    fd = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        return os.path.exists(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def read_xattrs(path: str, report: Report, shown: str | None = None, follow: bool = False) -> str | None:
    """Every extended attribute this process can read (``trusted.*`` only as root; POSIX ACLs are the
    ``system.posix_acl_*`` ones), as canonical JSON, or None when there are none."""
    try:
        names = os.listxattr(path, follow_symlinks=follow)
    except OSError:
        return None  # none, or a file system without them
    found = {}
    for name in sorted(names):
        try:
            found[name] = base64.b64encode(os.getxattr(path, name, follow_symlinks=follow)).decode("ascii")
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, errno.ENOENT):
                report("warning", f"cannot read the extended attribute {name} of {shown or path}: {exc.strerror}; "
                                  "it is not in this restore point")
    return json.dumps(found, sort_keys=True, separators=(",", ":")) if found else None
