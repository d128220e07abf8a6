"""Radial profiles (Upsilon), mean concentrations and transformations: the paper's definitions."""

import numpy as np
import pytest

from mummi_ml.patch import (
    TRANSFORM_GROUPS,
    apply_transforms,
    mean_concentrations,
    radial_profiles,
)


def brute_force_profiles(patch: np.ndarray, channels) -> np.ndarray:
    """Upsilon of one patch by a loop over pixels, straight from DESIGN.md."""
    refs = [((18, 18), False), ((0, 0), True), ((0, 36), True), ((36, 0), True), ((36, 36), True)]
    out = []
    for c in channels:
        profiles = []
        for (i0, j0), quadrant_only in refs:
            g = np.full(19, -np.inf)
            for i in range(37):
                for j in range(37):
                    if quadrant_only and (abs(i - i0) > 18 or abs(j - j0) > 18):
                        continue
                    r = int(round(np.hypot(i - i0, j - j0)))
                    if r <= 18:
                        g[r] = max(g[r], patch[i, j, c])
            profiles.append(g)
        out.append(np.concatenate([profiles[0], np.mean(profiles[1:], axis=0)]))
    return np.concatenate(out)


def test_radial_profiles_match_brute_force(rng):
    x = rng.normal(size=(3, 37, 37, 14)).astype(np.float32)
    u = radial_profiles(x, channels=[5, 0, 13])
    for n in range(3):
        np.testing.assert_allclose(u[n], brute_force_profiles(x[n], [5, 0, 13]), atol=1e-6)


def test_radial_profiles_match_brute_force_across_block_boundaries(rng):
    # 300 patches span three blocks of the batched gather, the last one partial
    x = rng.normal(size=(300, 37, 37, 14)).astype(np.float32)
    u = radial_profiles(x)
    for n in (0, 127, 128, 255, 256, 299):
        np.testing.assert_allclose(u[n], brute_force_profiles(x[n], list(range(8))), atol=1e-6)


def test_radial_profiles_of_float64_input_equal_those_of_float32(rng):
    x = rng.normal(size=(5, 37, 37, 14))
    assert np.array_equal(radial_profiles(x), radial_profiles(x.astype(np.float32)))


def test_radial_profiles_of_no_patches_is_empty():
    assert radial_profiles(np.zeros((0, 37, 37, 14), np.float32)).shape == (0, 304)


def test_radial_profiles_shape_is_38_per_channel(rng):
    x = rng.normal(size=(4, 37, 37, 14)).astype(np.float32)
    assert radial_profiles(x).shape == (4, 304)
    assert radial_profiles(x, channels=["inner_PAPS"]).shape == (4, 38)
    assert radial_profiles(x).dtype == np.float32


@pytest.mark.parametrize("group", ["paper", "dihedral"])
def test_radial_profiles_exactly_invariant_under_every_transformation(rng, group):
    x = rng.normal(size=(50, 37, 37, 14)).astype(np.float32)
    u = radial_profiles(x)
    xt = apply_transforms(x, group)
    for t in range(xt.shape[1]):
        assert np.array_equal(radial_profiles(np.ascontiguousarray(xt[:, t])), u)


def test_hot_pixel_at_radius_from_centre_shows_in_centre_profile_only():
    x = np.zeros((1, 37, 37, 14), np.float32)
    x[0, 18, 18 + 7, 0] = 5.0  # 7 pixels right of the centre
    u = radial_profiles(x, channels=[0])[0]
    expected_centre = np.zeros(19)
    expected_centre[7] = 5.0
    np.testing.assert_array_equal(u[:19], expected_centre)
    # distance to corner (0,36) is hypot(18, 11) = 21.1 -> outside r <= 18; other corners farther
    np.testing.assert_array_equal(u[19:], np.zeros(19))


def test_hot_pixel_near_corner_gives_quarter_of_corner_profile():
    x = np.zeros((1, 37, 37, 14), np.float32)
    x[0, 3, 4, 2] = 8.0  # radius round(5.0) = 5 from corner (0, 0); 21 from the centre
    u = radial_profiles(x, channels=[2])[0]
    np.testing.assert_array_equal(u[:19], np.zeros(19))
    expected_corner = np.zeros(19)
    expected_corner[5] = 8.0 / 4  # only one of the four corner profiles sees it
    np.testing.assert_array_equal(u[19:], expected_corner)


def test_centre_pixel_shared_by_quadrants_appears_at_corner_radius():
    x = np.full((1, 37, 37, 14), -1.0, np.float32)
    x[0, 18, 18, 0] = 2.0  # the centre pixel belongs to all four quadrants at r = round(25.46) = 25
    u = radial_profiles(x, channels=[0])[0]
    assert u[0] == 2.0  # centre profile r = 0
    np.testing.assert_array_equal(u[19:], np.full(19, -1.0))  # r = 25 is beyond the profile


def test_radial_profiles_reject_wrong_shape():
    with pytest.raises(ValueError, match=r"expected shape \[N, 37, 37, 14\]"):
        radial_profiles(np.zeros((2, 36, 37, 14), np.float32))


def test_radial_profiles_reject_unknown_channel():
    with pytest.raises(ValueError, match="unknown channel name 'POPX'"):
        radial_profiles(np.zeros((1, 37, 37, 14), np.float32), channels=["POPX"])


def test_mean_concentrations_are_per_channel_means(rng):
    x = rng.random(size=(5, 37, 37, 14)).astype(np.float32)
    expected = x.astype(np.float64).mean(axis=(1, 2))
    np.testing.assert_allclose(mean_concentrations(x), expected, rtol=1e-6)
    assert mean_concentrations(x).shape == (5, 14)


def test_transforms_are_the_paper_rotations_and_reflections(rng):
    x = rng.normal(size=(2, 37, 37, 3))
    t = apply_transforms(x, "paper")
    assert t.shape == (2, 5, 37, 37, 3)
    assert TRANSFORM_GROUPS["paper"] == ("rot90", "rot180", "rot270", "flip_h", "flip_v")
    np.testing.assert_array_equal(t[:, 0], np.rot90(x, 1, axes=(1, 2)))
    np.testing.assert_array_equal(t[:, 1], np.rot90(x, 2, axes=(1, 2)))
    np.testing.assert_array_equal(t[:, 2], np.rot90(x, 3, axes=(1, 2)))
    np.testing.assert_array_equal(t[:, 3], x[:, :, ::-1])
    np.testing.assert_array_equal(t[:, 4], x[:, ::-1, :])


def test_dihedral_group_adds_both_diagonal_reflections(rng):
    x = rng.normal(size=(2, 37, 37, 3))
    t = apply_transforms(x, "dihedral")
    assert t.shape == (2, 7, 37, 37, 3)
    np.testing.assert_array_equal(t[:, 5], x.transpose(0, 2, 1, 3))
    np.testing.assert_array_equal(t[:, 6], x[:, ::-1, ::-1].transpose(0, 2, 1, 3))
    # all seven differ from the identity and from each other on a generic patch
    flat = np.concatenate([x[:1].reshape(1, -1), t[0].reshape(7, -1)])
    assert len(np.unique(flat, axis=0)) == 8


def test_transforms_reject_unknown_group(rng):
    with pytest.raises(ValueError, match="group: expected one of"):
        apply_transforms(rng.normal(size=(1, 37, 37, 14)), "octahedral")
