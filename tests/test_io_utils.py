"""Atomic writes: all or nothing, and the permissions of an ordinary file."""
import os
import stat

import pytest

from metaadv_tf.io_utils import atomic_save, atomic_write_text, read_json


def test_new_files_get_the_umask_permissions_and_replaced_files_keep_theirs(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "result.md"
        atomic_write_text(str(path), "one\n")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600
        path.chmod(0o640)
        atomic_write_text(str(path), "two\n")
        assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_text() == "two\n"
    finally:
        os.umask(old)


def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.weights.h5"
    path.write_text("old")

    def failing(temporary: str) -> None:
        with open(temporary, "w") as handle:
            handle.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_save(str(path), failing)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["model.weights.h5"]


def test_read_json_returns_the_value_and_none_for_a_missing_file(tmp_path):
    path = str(tmp_path / "record.json")
    assert read_json(path) is None
    atomic_write_text(path, '{"metrics": [1, 2]}\n')
    assert read_json(path) == {"metrics": [1, 2]}
