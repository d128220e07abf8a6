"""``mummi-ml info`` on good and bad files."""

import json

import numpy as np

from mummi_ml.cli import main
from mummi_ml.patch import PatchBatch, write_patches


def test_info_counts_classes_and_time_span(tmp_path, capsys):
    y = np.array([[0, 0], [1, 0], [1, 1], [1, 1], [4, 2]])
    batch = PatchBatch.from_arrays(
        np.ones((5, 37, 37, 14), np.float32), y, time_us=np.array([0.5, 1, 2, 3, 7.25])
    )
    write_patches(tmp_path / "p.h5", batch)
    assert main(["info", str(tmp_path / "p.h5"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["n_patches"] == 5
    assert s["class_counts"] == {"no protein": 1, "1 RAS": 1, "1 RAS-RAF": 2, "other": 1}
    assert s["time_us"] == [0.5, 7.25]
    assert s["schema_version"] == 1
    assert s["channels"]["inner_POPC"] == {"mean": 1.0, "std": 0.0}


def test_info_text_output_lists_channels(tmp_path, capsys):
    write_patches(tmp_path / "p.h5", PatchBatch.from_arrays(np.ones((2, 37, 37, 14)), [[0, 0]] * 2))
    assert main(["info", str(tmp_path / "p.h5")]) == 0
    out = capsys.readouterr().out
    assert "outer_CHOL" in out and "patches:        2" in out


def test_info_on_truncated_file_is_one_line_error(tmp_path, capsys):
    (tmp_path / "bad.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    assert main(["info", str(tmp_path / "bad.h5")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.h5: not a readable HDF5 file" in err


def test_info_on_missing_file_is_one_line_error(tmp_path, capsys):
    assert main(["info", str(tmp_path / "none.h5")]) == 2
    assert "none.h5: no such file" in capsys.readouterr().err
