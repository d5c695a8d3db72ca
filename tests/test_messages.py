"""Messages of refused writes: a full disk or a refusing folder names the file the user knows (the
destination), never the temporary file of the atomic write, and says what is kept."""
import errno
import os

import pytest

from landscape.cli import main
from landscape.io import results as res


class _FullDisk:
    """A file object whose write fails as on a full disk."""

    def __init__(self, fh):
        self.fh = fh

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")


def _fill_the_disk(monkeypatch):
    real = os.fdopen
    monkeypatch.setattr(res.os, "fdopen", lambda fd, mode: _FullDisk(real(fd, mode)))


@pytest.fixture
def full_disk(monkeypatch):
    _fill_the_disk(monkeypatch)


def test_a_full_disk_names_the_destination_and_keeps_its_previous_content(tmp_path, full_disk):
    target = tmp_path / "summary.json"
    target.write_text("previous")
    with pytest.raises(OSError) as info:
        res.write_json(target, {"a": 1})
    exc = info.value
    assert exc.errno == errno.ENOSPC and exc.filename == str(target) and exc.filename2 is None
    assert ".tmp-" not in str(exc) and ".tmp-" not in exc.strerror
    assert exc.strerror.startswith("No space left on device: the disk is full, so summary.json was not written")
    assert "everything finished before it is kept" in exc.strerror and exc.reason == "No space left on device"
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]   # no temporary file left behind


def test_other_refusals_keep_their_type_and_name_the_destination(tmp_path, monkeypatch):
    target = tmp_path / "tree.json"

    def denied(prefix, dir):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, prefix + "q1w2e3"))

    monkeypatch.setattr(res.tempfile, "mkstemp", denied)
    with pytest.raises(PermissionError) as info:
        res.atomic_write_text(target, "x")
    assert info.value.filename == str(target) and info.value.strerror == "Permission denied"
    monkeypatch.undo()

    def cross(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link", src, dst)

    monkeypatch.setattr(res.os, "replace", cross)
    with pytest.raises(OSError) as info:
        res.atomic_write_text(target, "x")
    assert info.value.errno == errno.EXDEV and info.value.filename == str(target) and info.value.filename2 is None
    assert "kept" not in info.value.strerror
    assert list(tmp_path.iterdir()) == []


def test_the_command_line_names_the_report_on_a_full_disk(tmp_path, capsys, monkeypatch):
    from study_fixture import build_study

    study = build_study(tmp_path / "study")
    _fill_the_disk(monkeypatch)
    assert main(["report", str(study)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ".tmp-" not in err
    assert err.startswith(f"landscape report: error: {study / 'report.html'}: No space left on device: the disk is "
                          "full, so report.html was not written")
    assert "everything finished before it is kept" in err and not (study / "report.html").exists()
