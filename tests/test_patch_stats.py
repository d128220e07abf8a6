"""Streaming standardisation statistics."""

import numpy as np
import pytest

from mummi_ml.errors import MummiMLError
from mummi_ml.patch import ChannelStats


def test_streaming_stats_equal_whole_array_stats(rng):
    x = (rng.normal(size=(60, 37, 37, 14)) * np.arange(1, 15) + np.arange(14)).astype(np.float32)
    stats = ChannelStats.from_batches(x[i : i + 7] for i in range(0, 60, 7))
    flat = x.reshape(-1, 14).astype(np.float64)
    np.testing.assert_allclose(stats.mean, flat.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.std, flat.std(0), rtol=1e-10)
    assert stats.count == 60 * 37 * 37


def test_stats_stay_accurate_with_a_large_offset(rng):
    x = (1e4 + rng.normal(size=(20, 37, 37, 14)) * 1e-3).astype(np.float64)
    stats = ChannelStats.from_batches(x[i : i + 3] for i in range(0, 20, 3))
    np.testing.assert_allclose(stats.std, x.reshape(-1, 14).std(0), rtol=1e-6)


def test_standardise_gives_zero_mean_unit_std(rng):
    x = (rng.random(size=(30, 37, 37, 14)) * 5 + 2).astype(np.float32)
    z = ChannelStats.from_batches([x]).standardise(x)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.reshape(-1, 14).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z.reshape(-1, 14).std(0), 1, atol=1e-4)


def test_constant_channel_is_only_centred():
    x = np.ones((2, 37, 37, 14), np.float32)
    z = ChannelStats.from_batches([x]).standardise(x)
    assert np.isfinite(z).all() and (z == 0).all()


def test_save_and_load_round_trip(tmp_path, rng):
    stats = ChannelStats.from_batches([rng.random(size=(3, 37, 37, 14))])
    stats.save(tmp_path / "s.json")
    back = ChannelStats.load(tmp_path / "s.json")
    np.testing.assert_array_equal(back.mean, stats.mean)
    np.testing.assert_array_equal(back.std, stats.std)


def test_malformed_stats_file_is_an_error(tmp_path):
    (tmp_path / "s.json").write_text('{"mean": [1, 2], "std": [1, 2], "count": 3}')
    with pytest.raises(MummiMLError, match="expected 14 channels"):
        ChannelStats.load(tmp_path / "s.json")
    (tmp_path / "t.json").write_text("{not json")
    with pytest.raises(MummiMLError, match="not valid JSON"):
        ChannelStats.load(tmp_path / "t.json")


def test_no_data_is_an_error():
    with pytest.raises(ValueError, match="no data"):
        ChannelStats.from_batches([])
