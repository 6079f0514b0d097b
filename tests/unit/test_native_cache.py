"""Unpacking downloads: the same refusals on every Python the lab runs on.

Debian 12's Python (3.11.2) has no ``filter`` for ``TarFile.extractall``; a bare Debian ran
``.ci/run`` into that. Both paths are run here: the interpreter's own filter, and the checks
``unpack`` makes where there is none.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from native.servers.cache import unpack
from native.servers.process import HarnessError


def archive(path: Path, *members: tuple[str, bytes | None, str | None]) -> Path:
    """A .tgz with files (name, data) and symlinks (name, None, target)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(data or b"")
                tar.addfile(info, io.BytesIO(data or b""))
    return path


@pytest.fixture(params=["filter", "no filter"])
def python(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "no filter":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    return str(request.param)


def test_a_package_unpacks_with_its_links_inside(tmp_path: Path, python: str) -> None:
    source = archive(
        tmp_path / "ok.tgz",
        ("package/bin/tool", b"#!/bin/sh\n", None),
        ("package/lib/current", None, "../bin"),
    )
    unpack(source, tmp_path / "out")
    assert (tmp_path / "out" / "package" / "bin" / "tool").read_bytes() == b"#!/bin/sh\n"
    assert (tmp_path / "out" / "package" / "lib" / "current" / "tool").exists()


@pytest.mark.parametrize(
    "member",
    [
        ("../escaped", b"x", None),
        ("/tmp/absolute-streamlab-test", b"x", None),
        ("package/out", None, "../../elsewhere"),
        ("package/root", None, "/etc"),
    ],
)
def test_a_member_that_would_land_outside_never_does(
    tmp_path: Path, python: str, member: tuple[str, bytes | None, str | None]
) -> None:
    """Refused, or (Python's own filter, for an absolute name) put inside: never outside."""
    source = archive(tmp_path / "bad.tgz", member)
    (tmp_path / "out").mkdir()
    try:
        unpack(source, tmp_path / "out")
    except (HarnessError, tarfile.TarError):
        pass
    else:
        assert python == "filter", "the checks without a filter refuse every such member"
        assert member[0].startswith("/"), "only an absolute name is rewritten, the rest refused"
        assert (tmp_path / "out" / member[0].lstrip("/")).exists()
    assert not (tmp_path / "escaped").exists()
    assert not Path("/tmp/absolute-streamlab-test").exists()
