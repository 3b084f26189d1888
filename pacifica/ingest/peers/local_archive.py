"""The archive on this machine's disk: a directory with one file per file id.

Two rules shape it. A file under an id never loses bytes that were checked: a file is written
without a name (``O_TMPFILE``) and linked under its file id once its check passes, and an earlier
file of that id is replaced in one step, never truncated (a broker's second delivery of a stage
that is still running must not empty a file the first delivery verified). (Where the filesystem
has no ``O_TMPFILE`` the file is written under ``.incoming/`` and renamed.)

A small file (``DIRECT_MAX``) whose id has no file yet is checked first and then created under
its id at once (``O_EXCL``: it never opens an existing file). The unnamed file and its link took
half of the archive's time for small files, and the microseconds a small file is incomplete under
its id hurt no one: nothing names the id before the job records it. A writer killed meanwhile
leaves a partial file that its job's ledger lists as started: the next attempt replaces it
whole, a rollback deletes it.

And a byte is written once where it can be: the kernel copies a range of the bundle
(``copy_file_range``, a reflink on XFS and btrfs), and a member already staged on the same
filesystem while the upload arrived is linked into place (``adopt``), not copied at all.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from stat import S_ISREG

from ..common.errors import PeerRejected, PeerUnavailable

logger = logging.getLogger(__name__)

PEER = "archive interface"
# Errors of O_TMPFILE on a filesystem (or kernel) that cannot make unnamed files.
_NO_TMPFILE = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL)
# Errors of link() where the filesystem cannot link (FAT, some FUSE and network filesystems).
_NO_LINK = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP, errno.ENOSYS)


class _Draft:
    """A file being written for ``file_id``: an open descriptor, and the temporary name it has
    (None while it has none)."""

    __slots__ = ("fd", "file_id", "temp")

    def __init__(self, file_id: int, fd: int, temp: str | None) -> None:
        self.file_id = file_id
        self.fd = fd
        self.temp = temp


class LocalArchive:
    """Keep archived files in a local directory, each under its file id.

    ``make_durable`` flushes a batch of files to disk in one go: one ``fsync`` per file costs a
    journal commit each, which for thousands of small files would take longer than everything
    else together.
    """

    INCOMING = ".incoming"
    # Files are written one at a time: on a local disk the work is a handful of system calls per
    # file, and threads doing them at once contend for the directory and the GIL (10,000 x 4 KiB:
    # 1.0 s in one thread, 2.8 s in two, 4.7 s in four).
    max_concurrency = 1
    copies_ranges = True
    adopts_files = True
    # Leftovers of killed writers (named temporary files) are looked for at most this often (seconds).
    SWEEP_INTERVAL = 10.0
    # Up to this many files are synced one by one; more, and the whole filesystem is synced once.
    FSYNC_EACH_MAX = 16
    # Files up to this size are created under their id directly when it is free (see the module);
    # less than the pipeline's RANGE_COPY_MIN, whose larger files are checked as they are copied.
    DIRECT_MAX = 512 << 10

    def __init__(self, root: str) -> None:
        self.root = root
        self.url = f"file://{root}"
        self._incoming = os.path.join(root, self.INCOMING)
        self._ready = False
        # Unnamed files until the filesystem says it has none (and only where /proc can name them).
        self._unnamed = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")
        self._swept = float("-inf")
        self._root_fd: int | None = None
        self._root_pid = 0

    def path(self, file_id: int) -> str:
        """Return where ``file_id`` is kept."""
        return os.path.join(self.root, str(int(file_id)))

    def _prepare(self) -> None:
        if not self._ready:
            os.makedirs(self.root, exist_ok=True)
            self._ready = True
        now = time.monotonic()
        if now - self._swept >= self.SWEEP_INTERVAL:
            self._swept = now
            self._remove_leftovers()

    def _temp_name(self, file_id: int) -> str:
        """A fresh name under ``.incoming/`` (its writer's pid in it, for the sweep)."""
        os.makedirs(self._incoming, exist_ok=True)
        return os.path.join(self._incoming, f"{int(file_id)}-{os.getpid()}-{uuid.uuid4().hex}")

    def _remove_leftovers(self) -> None:
        """Remove temporary files whose writer died (a killed worker's partial write)."""
        try:
            names = os.listdir(self._incoming)
        except FileNotFoundError:
            return
        for name in names:
            pid = name.split("-")[1] if name.count("-") >= 2 else ""
            if pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self._incoming, name))

    def _new_draft(self, file_id: int) -> _Draft:
        self._prepare()
        if self._unnamed:
            try:
                return _Draft(file_id, os.open(self.root, os.O_TMPFILE | os.O_WRONLY, 0o666), None)
            except OSError as exc:
                if exc.errno not in _NO_TMPFILE:
                    raise
                logger.info("%s: the filesystem makes no unnamed files (%s); files are written under %s/ "
                            "and renamed", self.root, exc.strerror, self.INCOMING)
                self._unnamed = False
        temp = self._temp_name(file_id)
        return _Draft(file_id, os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temp)

    @contextlib.contextmanager
    def _drafting(self, file_id: int) -> Iterator[_Draft]:
        """A new file to write ``file_id`` to, gone afterwards unless committed; any ``OSError``
        (a full disk, say) becomes ``PeerUnavailable``."""
        try:
            draft = self._new_draft(file_id)
            try:
                yield draft
            finally:
                os.close(draft.fd)
                if draft.temp is not None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(draft.temp)
        except OSError as exc:
            raise PeerUnavailable(PEER, self.url, f"file {file_id}: {exc}") from None

    def _commit(self, draft: _Draft, written: int, size: int) -> None:
        """Give the finished ``draft`` its file id as name (replacing any file of that id)."""
        if written != size:
            raise PeerRejected(PEER, self.url, f"file {draft.file_id}: received {written} of {size} bytes")
        final = self.path(draft.file_id)
        if draft.temp is not None:
            os.replace(draft.temp, final)
            draft.temp = None
            return
        self._link_into_place(f"/proc/self/fd/{draft.fd}", draft.file_id)

    def _directory(self) -> int:
        """A descriptor of the archive directory, one per process (``link_into_place`` needs one)."""
        if self._root_fd is None or self._root_pid != os.getpid():
            self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            self._root_pid = os.getpid()
        return self._root_fd

    def _reopen_directory(self) -> None:
        """The directory this process holds open was removed and made again: open it anew."""
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None
        os.makedirs(self.root, exist_ok=True)

    def _link_into_place(self, source: str, file_id: int) -> None:
        """Link the open file ``source`` (``/proc/self/fd/N``) as ``file_id``; an earlier
        attempt's file there is replaced in one step.

        Only linkat() with AT_SYMLINK_FOLLOW links the open file a ``/proc`` name points to, and
        ``os.link`` calls linkat() only when given a directory descriptor: so it is given one.
        """
        try:
            os.link(source, str(int(file_id)), dst_dir_fd=self._directory(), follow_symlinks=True)
            return
        except FileExistsError:
            pass
        except FileNotFoundError:
            if not os.path.lexists(source) or self._root_fd is None:
                raise
            self._reopen_directory()
            os.link(source, str(int(file_id)), dst_dir_fd=self._directory(), follow_symlinks=True)
            return
        temp = self._temp_name(file_id)
        os.link(source, temp, dst_dir_fd=self._directory(), follow_symlinks=True)
        final = self.path(file_id)
        try:
            os.replace(temp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise

    def put(self, file_id: int, body: Iterable[bytes], size: int, mtime: float) -> None:
        """Store exactly ``size`` bytes from ``body`` as ``file_id`` (durable after ``make_durable``)."""
        with self._drafting(file_id) as draft, open(draft.fd, "wb", closefd=False) as out:
            written = 0
            for block in body:
                out.write(block)
                written += len(block)
            out.flush()
            os.utime(draft.fd, (mtime, mtime))
            self._commit(draft, written, size)

    def put_range(self, file_id: int, source: int, offset: int, size: int, mtime: float,
                  check: Callable[[], None] | None = None) -> None:
        """Store ``size`` bytes at ``offset`` of the open file ``source`` as ``file_id``.

        The kernel copies the bytes (``copy_file_range``: no pass through this process, and on
        filesystems that share extents no copy at all). ``check`` runs before the file is put in
        place; if it raises, the file is not stored. It checks the source's bytes: for a small file
        created under its id directly it runs before the copy, so a refused file never has a name.
        """
        if size <= self.DIRECT_MAX and self._put_range_direct(file_id, source, offset, size, mtime, check):
            return
        with self._drafting(file_id) as draft:
            written = _copy_range(source, draft.fd, offset, size)
            os.utime(draft.fd, (mtime, mtime))
            if check is not None:
                check()
            self._commit(draft, written, size)

    def _put_range_direct(self, file_id: int, source: int, offset: int, size: int, mtime: float,
                          check: Callable[[], None] | None) -> bool:
        """``put_range`` into a file created under ``file_id``; False (nothing done) if that
        name is taken: an existing file is only ever replaced whole."""
        try:
            self._prepare()
            # The check is of the source's bytes: made first, a refused file never has a name.
            # (Made again by ``put_range`` if the name is taken: checks can be repeated.)
            if check is not None:
                check()
            fd = self._create(file_id)
            if fd is None:
                return False
            try:
                written = _copy_range(source, fd, offset, size)
                os.utime(fd, (mtime, mtime))
                if written != size:
                    raise PeerRejected(PEER, self.url, f"file {file_id}: received {written} of {size} bytes")
            except BaseException:
                self._remove_own(fd, file_id)
                raise
            finally:
                os.close(fd)
        except OSError as exc:
            raise PeerUnavailable(PEER, self.url, f"file {file_id}: {exc}") from None
        return True

    def _create(self, file_id: int) -> int | None:
        """A new file named ``file_id``, open for writing; None if that name exists."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            return os.open(str(int(file_id)), flags, 0o666, dir_fd=self._directory())
        except FileExistsError:
            return None
        except FileNotFoundError:
            if self._root_fd is None:
                raise
            self._reopen_directory()
            try:
                return os.open(str(int(file_id)), flags, 0o666, dir_fd=self._directory())
            except FileExistsError:
                return None

    def _remove_own(self, fd: int, file_id: int) -> None:
        """Remove the file named ``file_id`` if it is still the file open as ``fd`` (another
        delivery of the stage may have put its own whole copy there meanwhile)."""
        name = str(int(file_id))
        with contextlib.suppress(OSError):
            directory = self._directory()
            ours, named = os.fstat(fd), os.stat(name, dir_fd=directory, follow_symlinks=False)
            if (ours.st_dev, ours.st_ino) == (named.st_dev, named.st_ino):
                os.unlink(name, dir_fd=directory)

    def can_adopt(self, directory: str) -> bool:
        """Whether files in ``directory`` can become archived files by a link (same filesystem)."""
        try:
            os.makedirs(self.root, exist_ok=True)
            return os.stat(directory).st_dev == os.stat(self.root).st_dev
        except OSError:
            return False

    def adopt(self, file_id: int, source: str, size: int, mtime: float,
              check: Callable[[], None] | None = None) -> None:
        """Store the file at ``source`` (``size`` bytes, on this archive's filesystem) as
        ``file_id`` by linking it: its bytes are not copied. ``source`` keeps its name and
        content; ``check`` runs before the file is put in place, and may raise to refuse it.
        Where the filesystem cannot link, the bytes are copied instead.

        The file is opened first (never through a symbolic link) and the open file is what is
        checked and linked: what is archived is what was checked, whatever happens to the name.
        """
        try:
            self._prepare()
            try:
                fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                raise PeerRejected(PEER, self.url, f"file {file_id}: the staged copy is a symbolic link") from None
            try:
                stat = os.fstat(fd)
                if not S_ISREG(stat.st_mode):
                    raise PeerRejected(PEER, self.url, f"file {file_id}: the staged copy is not a regular file")
                if stat.st_size != size:
                    raise PeerRejected(PEER, self.url,
                                       f"file {file_id}: the staged copy holds {stat.st_size} of {size} bytes")
                if check is not None:
                    check()
                os.utime(fd, (mtime, mtime))
                try:
                    self._link_into_place(f"/proc/self/fd/{fd}", file_id)
                except OSError as exc:
                    if exc.errno not in _NO_LINK:
                        raise
                    self.put_range(file_id, fd, 0, size, mtime)
            finally:
                os.close(fd)
        except OSError as exc:
            raise PeerUnavailable(PEER, self.url, f"file {file_id}: {exc}") from None

    def make_durable(self, file_ids: Iterable[int]) -> None:
        """Flush the files ``file_ids`` (and their names) to disk."""
        file_ids = list(file_ids)
        if not file_ids:
            return
        try:
            if len(file_ids) <= self.FSYNC_EACH_MAX:
                for file_id in file_ids:
                    with contextlib.suppress(FileNotFoundError), open(self.path(file_id), "rb") as handle:
                        os.fsync(handle.fileno())
            else:
                _syncfs(self.root)
            directory = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            raise PeerUnavailable(PEER, self.url, f"flushing {len(file_ids)} files to disk: {exc}") from None

    def patch(self, file_id: int, source: str) -> None:
        """Move the file at ``source`` into place as ``file_id`` (renamed, or copied across filesystems)."""
        if not os.path.isfile(source):
            raise PeerRejected(PEER, self.url, f"file {file_id}: source {source} is not a file")
        try:
            self._prepare()
            temp = self._temp_name(file_id)
            shutil.move(source, temp)
            os.replace(temp, self.path(file_id))
        except OSError as exc:
            raise PeerUnavailable(PEER, self.url, f"file {file_id}: cannot move {source}: {exc}") from None

    def delete(self, file_id: int) -> None:
        """Remove ``file_id``; a file that is not there is fine."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(file_id))

    def stored_size(self, file_id: int) -> int | None:
        """The size of the file kept as ``file_id``, or None if there is none."""
        try:
            return os.stat(self.path(file_id)).st_size
        except FileNotFoundError:
            return None

    def media(self, file_id: int) -> str | None:
        """'disk' for a file kept, else None."""
        return "disk" if os.path.isfile(self.path(file_id)) else None

    def recall(self, file_id: int, wait: float) -> bool:
        """Nothing to recall: every file is on disk."""
        return True

    def read(self, file_id: int, block_size: int) -> Iterator[bytes]:
        """The bytes kept as ``file_id``; ``PeerRejected`` if there is no such file."""
        try:
            handle = open(self.path(file_id), "rb")  # noqa: SIM115 - closed below, as the generator ends
        except FileNotFoundError:
            raise PeerRejected(PEER, self.url, f"file {file_id} does not exist") from None
        except OSError as exc:
            raise PeerUnavailable(PEER, self.url, f"file {file_id} cannot be read: {exc.strerror}") from None
        with handle:
            # The pages an audit reads are not worth keeping in the cache (years-old files read once).
            with contextlib.suppress(OSError, AttributeError):
                os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            while block := handle.read(block_size):
                yield block
            with contextlib.suppress(OSError, AttributeError):
                os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)




def _copy_range(source: int, target: int, offset: int, size: int) -> int:
    """Copy ``size`` bytes at ``offset`` of ``source`` to ``target``; return how many were copied."""
    copied = 0
    try:
        while copied < size:
            count = os.copy_file_range(source, target, min(size - copied, 1 << 30), offset + copied)
            if count == 0:
                return copied
            copied += count
        return copied
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    # No in-kernel copy between these files: copy through a buffer instead.
    while copied < size:
        block = os.pread(source, min(size - copied, 1 << 22), offset + copied)
        if not block:
            break
        os.write(target, block)
        copied += len(block)
    return copied


def _syncfs(path: str) -> None:
    """Flush the filesystem holding ``path`` (``syncfs``), or every filesystem where that is missing."""
    libc = ctypes.CDLL(None, use_errno=True)
    syncfs = getattr(libc, "syncfs", None)
    if syncfs is None:
        os.sync()
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        if syncfs(descriptor) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
    finally:
        os.close(descriptor)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a killed process that is not yet reaped does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True
