"""Patch files, schema version 2: the optional producer fields ``name``, ``class`` and
``bin_value`` round-trip; version-1 files are still read."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from mummi_ml.errors import PatchFileError
from mummi_ml.patch import PatchBatch, PatchFile, PatchWriter, read_patches, write_patches


def _batch(rng, n, first_id=0, **extra):
    x = rng.uniform(0.0, 1.0, size=(n, 37, 37, 14)).astype(np.float32)
    y = np.tile([1, 0], (n, 1))
    return PatchBatch.from_arrays(x, y, ids=np.arange(first_id, first_id + n), **extra)


def test_names_classes_and_bin_values_round_trip(rng, tmp_path):
    names = [f"mu-24-sim_{i:012d}" for i in range(5)]
    b = _batch(rng, 5, names=names, given_class=[0, 1, 2, 3, -1],
               bin_value=[1.5, np.nan, 3.0, 4.0, 5.0])
    back = read_patches(write_patches(tmp_path / "p.h5", b))
    assert back.names.tolist() == names
    assert back.given_class.tolist() == [0, 1, 2, 3, -1]
    assert np.array_equal(back.bin_value, b.bin_value, equal_nan=True)


def test_the_datasets_are_named_for_readers_without_this_code(rng, tmp_path):
    path = write_patches(tmp_path / "p.h5", _batch(rng, 2, names=["a", "b"], given_class=[2, 2]))
    with h5py.File(path, "r") as f:
        assert f.attrs["schema_version"] == 2
        assert [v.decode() for v in f["name"][:]] == ["a", "b"]
        assert f["class"][:].tolist() == [2, 2]
        assert "bin_value" not in f  # created only when some batch has it


def test_a_field_first_seen_in_a_later_batch_is_backfilled_with_none(rng, tmp_path):
    with PatchWriter(tmp_path / "p.h5") as w:
        w.append(_batch(rng, 3))
        w.append(_batch(rng, 2, first_id=3, names=["x", "y"], given_class=[1, 1]))
        w.append(_batch(rng, 1, first_id=5))
    back = read_patches(tmp_path / "p.h5")
    assert back.names.tolist() == ["", "", "", "x", "y", ""]
    assert back.given_class.tolist() == [-1, -1, -1, 1, 1, -1]
    assert back.bin_value is None


def test_random_access_and_concat_keep_the_producer_fields(rng, tmp_path):
    b = _batch(rng, 6, names=[f"n{i}" for i in range(6)])
    write_patches(tmp_path / "p.h5", b)
    with PatchFile(tmp_path / "p.h5") as f:
        assert f[[4, 1]].names.tolist() == ["n4", "n1"]
        assert f.optional_fields == ["names"]
        assert f.field("given_class").tolist() == [-1] * 6
    both = PatchBatch.concat([b.subset([0]), _batch(rng, 1, first_id=9)])
    assert both.names.tolist() == ["n0", ""]


def test_a_version_1_file_is_still_read(rng, tmp_path):
    path = write_patches(tmp_path / "v1.h5", _batch(rng, 3))
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 1
    back = read_patches(path)
    assert len(back) == 3 and back.names is None and back.given_class is None


def test_a_version_1_file_with_a_version_2_dataset_is_refused(rng, tmp_path):
    path = write_patches(tmp_path / "bad.h5", _batch(rng, 2, names=["a", "b"]))
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 1
    with pytest.raises(PatchFileError, match="'name' needs schema version 2"):
        PatchFile(path)


def test_a_class_dataset_of_the_wrong_shape_is_refused(rng, tmp_path):
    path = write_patches(tmp_path / "bad.h5", _batch(rng, 2, given_class=[1, 1]))
    with h5py.File(path, "a") as f:
        del f["class"]
        f["class"] = np.zeros(5, np.int16)
    with pytest.raises(PatchFileError, match="'class' has shape"):
        PatchFile(path)


def test_names_must_be_strings(rng):
    with pytest.raises(ValueError, match="names: expected strings"):
        _batch(rng, 2, names=[1, 2])
