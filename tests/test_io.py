"""Atomic outputs: a failed or interrupted write leaves nothing behind, with a clear message."""

from __future__ import annotations

import errno
import os

import pytest
import torch

from mergekit_arm._io import OutputWriteError, atomic_directory, atomic_file
from mergekit_arm.statistics import LayerStatistics, StatisticsContent, write_statistics


def _content() -> StatisticsContent:
    basis = torch.linalg.qr(torch.randn(8, 3))[0]
    return StatisticsContent(layers={"w": LayerStatistics(basis, torch.ones(3), torch.tensor(4.0))})


@pytest.mark.parametrize(("code", "hint"), [
    (errno.ENOSPC, "disk is full"),
    (errno.EROFS, "the file system is read-only: choose an output path you can write to"),
    (errno.EACCES, "no permission to write there"),
])
def test_disk_full_is_explained_and_leaves_no_file(tmp_path, monkeypatch, code, hint):
    def full_disk(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("mergekit_arm.statistics.save_file", full_disk)
    out = tmp_path / "stats.safetensors"
    with pytest.raises(OutputWriteError, match=hint):
        write_statistics(out, _content())
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_leaves_no_file(tmp_path):
    out = tmp_path / "x.bin"
    with pytest.raises(KeyboardInterrupt), atomic_file(out) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_replaced_only_on_success(tmp_path):
    out = tmp_path / "x.bin"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(out) as tmp:
        tmp.write_bytes(b"new")
        raise RuntimeError("boom")
    assert out.read_bytes() == b"old"
    with atomic_file(out) as tmp:
        tmp.write_bytes(b"new")
    assert out.read_bytes() == b"new"


def test_atomic_directory(tmp_path):
    final = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_directory(final) as tmp:
        (tmp / "a").write_text("1")
        raise RuntimeError("boom")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    with atomic_directory(final) as tmp:
        (tmp / "a").write_text("1")
    assert (final / "a").read_text() == "1"
    with pytest.raises(OutputWriteError, match="already exists"), atomic_directory(final):
        pass
    with atomic_directory(final, overwrite=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in final.iterdir()) == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_header_shapes_follow_a_rewritten_file(tmp_path):
    import os

    from safetensors.torch import save_file

    from mergekit_arm.models import safetensors_shapes

    path = tmp_path / "model.safetensors"
    save_file({"a": torch.zeros(2, 3), "b": torch.zeros(4)}, str(path))
    assert safetensors_shapes(path) == {"a": (2, 3), "b": (4,)}
    save_file({"a": torch.zeros(5, 3)}, str(path))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a later write
    assert safetensors_shapes(path) == {"a": (5, 3)}
