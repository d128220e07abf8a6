"""Batch validation: each bad input gives an error that names the patch and the problem."""

import numpy as np
import pytest

from mummi_ml.errors import PatchValidationError
from mummi_ml.patch import find_invalid, patch_class, validate_batch


def good(n=4):
    return np.zeros((n, 37, 37, 14), np.float32), np.array([[0, 0], [1, 0], [1, 1], [3, 2]][:n])


def test_valid_batch_passes():
    validate_batch(*good())


def test_wrong_patch_shape_is_named():
    msg = r"x: expected shape \[N, 37, 37, 14\], got \[4, 37, 37, 13\]"
    with pytest.raises(PatchValidationError, match=msg):
        validate_batch(np.zeros((4, 37, 37, 13), np.float32), good()[1])


def test_wrong_label_shape_is_named():
    with pytest.raises(PatchValidationError, match=r"y: expected shape \[4, 2\]"):
        validate_batch(good()[0], np.zeros((4, 3), int))


def test_integer_patches_are_rejected():
    with pytest.raises(PatchValidationError, match="floating-point dtype"):
        validate_batch(np.zeros((4, 37, 37, 14), np.int32), good()[1])


def test_nan_names_the_patch():
    x, y = good()
    x[2, 5, 5, 3] = np.nan
    with pytest.raises(PatchValidationError, match="patch 2: x has 1 non-finite") as info:
        validate_batch(x, y)
    assert info.value.index == 2


def test_inf_names_the_patch():
    x, y = good()
    x[1, 0, 0, 0] = np.inf
    with pytest.raises(PatchValidationError, match="patch 1"):
        validate_batch(x, y)


def test_more_raf_than_ras_is_rejected():
    x, y = good()
    y[3] = (1, 2)
    with pytest.raises(PatchValidationError, match=r"patch 3: n_raf > n_ras"):
        validate_batch(x, y)


def test_negative_count_is_rejected():
    x, y = good()
    y[0] = (-1, -1)
    with pytest.raises(PatchValidationError, match="patch 0: negative protein count"):
        validate_batch(x, y)


def test_find_invalid_reports_every_bad_patch():
    x, y = good()
    x[0, 0, 0, 0] = np.nan
    y[3] = (0, 1)
    bad, reasons = find_invalid(x, y)
    assert bad.tolist() == [True, False, False, True]
    assert reasons[0].startswith("patch 0") and reasons[1].startswith("patch 3")


def test_patch_class_maps_the_four_classes():
    y = np.array([[0, 0], [1, 0], [1, 1], [2, 0], [2, 1], [5, 5], [0, 0]])
    assert patch_class(y).tolist() == [0, 1, 2, 3, 3, 3, 0]
    assert patch_class(np.array([1, 1])) == 2
