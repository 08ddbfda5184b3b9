"""Making a file or directory really read-only for a test, also when the tests run as root.

Root ignores file modes, so `chmod 0444` would prove nothing there: as root the immutable
attribute (`chattr +i`) is used instead, which the kernel enforces for root as well. Where
neither works (root in a container without CAP_LINUX_IMMUTABLE, or a filesystem without the
attribute), the test is skipped with that reason rather than passing on a writable file.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


class ReadOnly:
    """Write protection for paths, lifted again by `lift` or at the end of the test."""

    def __init__(self) -> None:
        self._protected: dict[Path, int] = {}  # path -> its mode before

    def protect(self, path: Path) -> None:
        self._protected[path] = stat.S_IMODE(path.stat().st_mode)
        if AS_ROOT:
            _chattr("+i", path)
        else:
            path.chmod(0o555 if path.is_dir() else 0o444)

    def lift(self, path: Path) -> None:
        mode = self._protected.pop(path)
        if AS_ROOT:
            _chattr("-i", path)
        else:
            path.chmod(mode)

    def lift_all(self) -> None:
        for path in list(self._protected):
            self.lift(path)


def _chattr(flag: str, path: Path) -> None:
    subprocess.run(["chattr", flag, str(path)], check=True, capture_output=True)


def _check_root_can_protect(folder: Path) -> None:
    """Skip, saying why, if root cannot make a file immutable here."""
    if shutil.which("chattr") is None:
        pytest.skip("running as root, which ignores file modes, and chattr is not installed")
    probe = folder / "immutable-probe"
    probe.touch()
    try:
        _chattr("+i", probe)
    except subprocess.CalledProcessError as error:
        pytest.skip(
            "running as root, which ignores file modes, and `chattr +i` is refused here"
            f" ({error.stderr.decode().strip()}): no way to make a file read-only for root"
        )
    _chattr("-i", probe)
    probe.unlink()


@contextmanager
def read_only_paths(folder: Path) -> Iterator[ReadOnly]:
    if AS_ROOT:
        _check_root_can_protect(folder)
    protection = ReadOnly()
    try:
        yield protection
    finally:
        protection.lift_all()  # or pytest could not delete tmp_path
