# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""File-system primitives shared by every store: one atomic write, sha256, an atomic symlink switch (stdlib only).

The write is durable: temporary file in the same directory, fsync of the file, rename over the target, fsync of the
directory (so the rename itself survives a crash). Nothing half-written is ever visible under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import typing as t


def fsync_dir(directory: str) -> None:
    """Make a rename in DIRECTORY durable; best effort where the file system cannot fsync a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _removed_on_error(tmp: str) -> t.Iterator[None]:
    """Delete the temporary TMP when the block fails (also on KeyboardInterrupt), then re-raise."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomic(path: str, data: t.Union[str, bytes], mode: t.Optional[int] = None) -> None:
    """Replace PATH with DATA atomically and durably. MODE sets the permissions (mkstemp creates 0600)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    with _removed_on_error(tmp):
        with os.fdopen(fd, "wb") as handle:
            handle.write(data if isinstance(data, bytes) else data.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    fsync_dir(directory)


def sha256_file(path: str) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def switch_symlink(link: str, target: str) -> bool:
    """Point LINK at TARGET atomically (temp symlink + rename). False when it already does.

    Raises ``FileExistsError`` when LINK exists and is not a symlink (never replaced), ``OSError`` otherwise.
    """
    if os.path.islink(link) and os.readlink(link) == target:
        return False
    if os.path.exists(link) and not os.path.islink(link):
        raise FileExistsError(0, "exists and is not a symlink: refusing to replace it", link)
    tmp = os.path.join(os.path.dirname(link), ".%s-%d" % (os.path.basename(link), os.getpid()))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    with _removed_on_error(tmp):
        os.symlink(target, tmp)
        os.replace(tmp, link)
    fsync_dir(os.path.dirname(os.path.abspath(link)))
    return True
