"""Patch data layer: constants, validation, HDF5 files, standardisation, transformations and
features (radial profiles, mean concentrations). numpy and h5py only: nothing here needs torch.
"""

from mummi_ml.patch.batch import META_FIELDS, PatchBatch
from mummi_ml.patch.constants import (
    CHANNEL_NAMES,
    CLASS_NAMES,
    DEFAULT_PROFILE_CHANNELS,
    INNER_LEAFLET_CHANNELS,
    N_CHANNELS,
    N_CLASSES,
    N_RADII,
    NO_PROTEIN,
    ONE_RAS,
    ONE_RAS_RAF,
    OTHER,
    PATCH_LENGTH_NM,
    PATCH_SHAPE,
    PATCH_SIZE,
    PIXEL_SIZE_NM,
    channel_index,
    patch_class,
)
from mummi_ml.patch.h5io import (
    SCHEMA,
    SCHEMA_VERSION,
    PatchDataset,
    PatchFile,
    PatchWriter,
    open_patches,
    read_patches,
    write_patches,
)
from mummi_ml.patch.profiles import mean_concentrations, profile_groups, radial_profiles
from mummi_ml.patch.stats import ChannelStats
from mummi_ml.patch.summary import format_summary, summarise_patches
from mummi_ml.patch.transforms import (
    TRANSFORM_GROUPS,
    TRANSFORM_SPECS,
    apply_transform,
    apply_transforms,
)
from mummi_ml.patch.validate import find_invalid, validate_batch

__all__ = [
    "CHANNEL_NAMES",
    "CLASS_NAMES",
    "DEFAULT_PROFILE_CHANNELS",
    "INNER_LEAFLET_CHANNELS",
    "META_FIELDS",
    "N_CHANNELS",
    "N_CLASSES",
    "N_RADII",
    "NO_PROTEIN",
    "ONE_RAS",
    "ONE_RAS_RAF",
    "OTHER",
    "PATCH_LENGTH_NM",
    "PATCH_SHAPE",
    "PATCH_SIZE",
    "PIXEL_SIZE_NM",
    "SCHEMA",
    "SCHEMA_VERSION",
    "ChannelStats",
    "PatchBatch",
    "PatchDataset",
    "PatchFile",
    "PatchWriter",
    "TRANSFORM_GROUPS",
    "TRANSFORM_SPECS",
    "apply_transform",
    "apply_transforms",
    "channel_index",
    "find_invalid",
    "format_summary",
    "mean_concentrations",
    "open_patches",
    "patch_class",
    "profile_groups",
    "radial_profiles",
    "read_patches",
    "summarise_patches",
    "validate_batch",
    "write_patches",
]
