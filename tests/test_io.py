"""Tests of gfla_tf.io: atomic writes with normal permissions, stale-temporary cleanup."""

import os
import stat

import pytest

from gfla_tf import io


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_write_gets_umask_permissions(tmp_path, umask_022):
    path = tmp_path / "sub" / "a.txt"
    io.atomic_write_text(path, "hello")
    assert path.read_text() == "hello"
    assert _mode(path) == 0o644
    assert os.listdir(tmp_path / "sub") == ["a.txt"]


def test_atomic_path_keeps_suffix_and_cleans_up_on_error(tmp_path):
    path = tmp_path / "x.png"
    io.atomic_write_bytes(path, b"old")
    with pytest.raises(RuntimeError), io.atomic_path(path) as tmp:
        assert tmp.endswith("x.png") and os.path.basename(tmp).startswith(io.TMP_PREFIX)
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("writer failed")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["x.png"]


def test_atomic_directory(tmp_path, umask_022):
    target = tmp_path / "export"
    with io.atomic_directory(target) as tmp:
        os.makedirs(os.path.join(tmp, "variables"))
        with open(os.path.join(tmp, "variables", "v"), "w") as f:
            f.write("1")
    assert _mode(target) == 0o755
    assert (target / "variables" / "v").read_text() == "1"
    with pytest.raises(FileExistsError), io.atomic_directory(target):
        pass
    with pytest.raises(ValueError), io.atomic_directory(target, overwrite=True) as tmp:
        raise ValueError("no")
    assert (target / "variables" / "v").read_text() == "1"
    with io.atomic_directory(target, overwrite=True) as tmp:
        with open(os.path.join(tmp, "new"), "w") as f:
            f.write("2")
    assert sorted(os.listdir(target)) == ["new"]
    assert os.listdir(tmp_path) == ["export"]


def test_remove_stale_temporaries(tmp_path):
    (tmp_path / ".tmp-ckpt-abc").mkdir()
    (tmp_path / ".tmp-x.png").write_text("x")
    (tmp_path / "keep.txt").write_text("k")
    removed = io.remove_stale_temporaries(tmp_path)
    assert len(removed) == 2
    assert os.listdir(tmp_path) == ["keep.txt"]
    assert io.remove_stale_temporaries(tmp_path / "missing") == []
