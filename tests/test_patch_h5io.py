"""HDF5 patch files: round trip, streaming, random access, atomic writes, bad files."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

from mummi_ml.errors import PatchFileError, PatchValidationError
from mummi_ml.patch import (
    SCHEMA_VERSION,
    PatchBatch,
    PatchDataset,
    PatchFile,
    PatchWriter,
    read_patches,
    write_patches,
)


def make_batch(rng, n, id0=0):
    x = rng.random(size=(n, 37, 37, 14)).astype(np.float32)
    y = rng.integers(0, 3, size=(n, 2))
    y[:, 1] = np.minimum(y[:, 1], y[:, 0])
    return PatchBatch.from_arrays(
        x,
        y,
        ids=np.arange(id0, id0 + n),
        replica=rng.integers(0, 4, n),
        time_us=rng.random(n) * 100,
        centre_nm=rng.random((n, 2)) * 300,
        protein_id=rng.integers(-1, 50, n),
    )


def assert_batches_equal(a, b):
    for name in ("x", "y", "ids", "replica", "time_us", "centre_nm", "protein_id"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_round_trip_keeps_patches_and_metadata(tmp_path, rng):
    batch = make_batch(rng, 70)
    write_patches(tmp_path / "p.h5", batch, attrs={"preset": "campaign"})
    assert_batches_equal(read_patches(tmp_path / "p.h5"), batch)
    with PatchFile(tmp_path / "p.h5") as f:
        assert f.attrs["preset"] == "campaign"
        assert f.attrs["schema_version"] == 1  # no version-2 dataset: old readers read it
        assert f.attrs["n_patches"] == 70
        assert f.attrs["channel_names"][5] == "inner_PAPS"


def test_append_in_batches_and_len(tmp_path, rng):
    batch = make_batch(rng, 100)
    with PatchWriter(tmp_path / "p.h5", chunk_patches=16) as w:
        for lo in range(0, 100, 30):
            w.append(batch.subset(slice(lo, lo + 30)))
        assert len(w) == 100
    with PatchFile(tmp_path / "p.h5") as f:
        assert len(f) == 100
        assert_batches_equal(f.read(), batch)


def test_streaming_yields_every_patch_once_in_order(tmp_path, rng):
    batch = make_batch(rng, 90)
    write_patches(tmp_path / "p.h5", batch)
    with PatchFile(tmp_path / "p.h5") as f:
        parts = list(f.iter_batches(batch_size=25))
    assert [len(p) for p in parts] == [25, 25, 25, 15]
    assert_batches_equal(PatchBatch.concat(parts), batch)


def test_random_access_any_order_with_repeats(tmp_path, rng):
    batch = make_batch(rng, 200)
    with PatchWriter(tmp_path / "p.h5", chunk_patches=8) as w:
        w.append(batch)
    idx = np.array([150, 3, 3, 199, 0, 77, -1])
    with PatchFile(tmp_path / "p.h5") as f:
        assert_batches_equal(f[idx], batch.subset(idx))
        assert_batches_equal(f[10:20], batch.subset(slice(10, 20)))
        assert_batches_equal(f[5], batch.subset([5]))
        with pytest.raises(IndexError):
            f[[200]]


def test_field_reads_one_column_without_x(tmp_path, rng):
    batch = make_batch(rng, 40)
    write_patches(tmp_path / "p.h5", batch)
    with PatchFile(tmp_path / "p.h5") as f:
        np.testing.assert_array_equal(f.field("y"), batch.y)
        np.testing.assert_array_equal(f.field("ids"), batch.ids)


def test_dataset_reads_shards_as_one(tmp_path, rng):
    a, b = make_batch(rng, 30, id0=0), make_batch(rng, 20, id0=1000)
    write_patches(tmp_path / "run.rank0.h5", a)
    write_patches(tmp_path / "run.rank1.h5", b)
    with PatchDataset(str(tmp_path / "run.rank*.h5")) as ds:
        assert len(ds) == 50
        both = PatchBatch.concat([a, b])
        idx = np.array([49, 0, 31, 29, 30])
        assert_batches_equal(ds[idx], both.subset(idx))
        np.testing.assert_array_equal(ds.field("ids"), both.ids)
        assert sum(len(p) for p in ds.iter_batches(7)) == 50


def test_interrupted_write_leaves_no_file(tmp_path, rng):
    batch = make_batch(rng, 10)
    with pytest.raises(RuntimeError):
        with PatchWriter(tmp_path / "p.h5") as w:
            w.append(batch)
            raise RuntimeError("crash while writing")
    assert list(tmp_path.iterdir()) == []


def test_killed_writer_leaves_only_a_temporary_name(tmp_path):
    script = (
        "import os, numpy as np\n"
        "from mummi_ml.patch import PatchWriter, PatchBatch\n"
        f"w = PatchWriter({str(tmp_path / 'p.h5')!r})\n"
        "w.append(PatchBatch.from_arrays(np.ones((5, 37, 37, 14)), np.zeros((5, 2), int)))\n"
        "os._exit(9)  # dies without closing\n"
    )
    subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert not (tmp_path / "p.h5").exists()
    leftovers = list(tmp_path.iterdir())
    assert [p.name for p in leftovers] == ["p.h5.tmp"]
    with pytest.raises(PatchFileError):
        PatchFile(leftovers[0])


def test_truncated_file_gives_one_line_error(tmp_path, rng):
    write_patches(tmp_path / "p.h5", make_batch(rng, 50))
    data = (tmp_path / "p.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(PatchFileError, match="cut.h5: not a readable HDF5 file") as info:
        PatchFile(tmp_path / "cut.h5")
    assert "\n" not in str(info.value)


def test_foreign_hdf5_file_is_rejected(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(PatchFileError, match="not a mummi-ml patch file"):
        PatchFile(tmp_path / "other.h5")


def test_newer_schema_is_rejected(tmp_path, rng):
    write_patches(tmp_path / "p.h5", make_batch(rng, 3))
    with h5py.File(tmp_path / "p.h5", "a") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(PatchFileError, match="newer than this mummi-ml reads"):
        PatchFile(tmp_path / "p.h5")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(PatchFileError, match="nope.h5: no such file"):
        PatchFile(tmp_path / "nope.h5")


def test_not_hdf5_at_all_is_rejected(tmp_path):
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(PatchFileError, match="not a readable HDF5 file"):
        PatchFile(tmp_path / "text.h5")


def test_writer_rejects_bad_batch_and_keeps_what_was_written(tmp_path, rng):
    good = make_batch(rng, 10)
    with PatchWriter(tmp_path / "p.h5") as w:
        w.append(good)
        bad = make_batch(rng, 5, id0=100)
        bad.x[2, 0, 0, 0] = np.nan
        with pytest.raises(PatchValidationError, match="patch 2: x has 1 non-finite"):
            w.append(bad)
    assert_batches_equal(read_patches(tmp_path / "p.h5"), good)


def test_writer_rejects_duplicate_ids(tmp_path, rng):
    with PatchWriter(tmp_path / "p.h5") as w:
        w.append(make_batch(rng, 10, id0=0))
        with pytest.raises(PatchValidationError, match="patch id 5 already written"):
            w.append(make_batch(rng, 10, id0=5))


def test_file_is_self_describing_for_h5_tools(tmp_path, rng):
    write_patches(tmp_path / "p.h5", make_batch(rng, 4))
    with h5py.File(tmp_path / "p.h5", "r") as f:
        assert f["time_us"].attrs["units"] == "us"
        assert f["centre_nm"].attrs["units"] == "nm"
        assert "description" in f["x"].attrs
        assert f["x"].compression == "gzip"


def test_non_integer_schema_attributes_are_rejected_in_one_line(tmp_path, rng):
    write_patches(tmp_path / "p.h5", make_batch(rng, 3))
    with h5py.File(tmp_path / "p.h5", "a") as f:
        f.attrs["schema_version"] = "one"
    with pytest.raises(PatchFileError, match="'schema_version' is not an integer"):
        PatchFile(tmp_path / "p.h5")


def test_dataset_of_the_wrong_dtype_is_rejected(tmp_path, rng):
    write_patches(tmp_path / "p.h5", make_batch(rng, 3))
    with h5py.File(tmp_path / "p.h5", "a") as f:
        del f["id"]
        f["id"] = np.array([b"a", b"b", b"c"])
    with pytest.raises(PatchFileError, match="dataset 'id' has dtype"):
        PatchFile(tmp_path / "p.h5")


def test_writer_rejects_metadata_of_the_wrong_shape_and_keeps_the_file_readable(tmp_path, rng):
    good = make_batch(rng, 4)
    with PatchWriter(tmp_path / "p.h5") as w:
        w.append(good)
        bad = make_batch(rng, 3, id0=10)
        bad.centre_nm = np.zeros((3, 3), np.float32)
        with pytest.raises(PatchValidationError, match="'centre_nm' has shape"):
            w.append(bad)
    assert_batches_equal(read_patches(tmp_path / "p.h5"), good)


def test_writer_that_cannot_create_its_directory_raises_a_patch_file_error(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(PatchFileError, match="cannot create"):
        PatchWriter(tmp_path / "file" / "p.h5")


def test_fractional_protein_counts_are_rejected():
    with pytest.raises(PatchValidationError, match="whole numbers"):
        PatchBatch.from_arrays(np.zeros((1, 37, 37, 14)), np.array([[1.7, 0.2]]))


def test_writer_without_fsync_still_renames_only_on_a_clean_close(tmp_path, rng):
    x = rng.random((4, 37, 37, 14), dtype=np.float32)
    batch = PatchBatch.from_arrays(x, np.zeros((4, 2), np.int32))
    path = tmp_path / "p.h5"
    with PatchWriter(path, durable=False) as w:
        w.append(batch)
        assert not path.exists()
    with PatchFile(path) as f:
        np.testing.assert_array_equal(f.read().x, x)


def test_writer_that_cannot_rename_leaves_no_temporary_file(tmp_path, monkeypatch, rng):
    import mummi_ml.durable as durable_module  # the writer renames through mummi_ml.durable

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    out = tmp_path / "p.h5"
    w = PatchWriter(out)
    w.append(make_batch(rng, 3))
    monkeypatch.setattr(durable_module.os, "replace", refuse)
    with pytest.raises(PatchFileError, match="cannot finish writing"):
        w.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
