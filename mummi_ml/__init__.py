"""mummi-ml: a biology-informed similarity metric for membrane patches, and the in situ selector
that uses it to pick molecular-dynamics simulations in a multiscale RAS/RAF campaign.

Sub-packages, lowest layer first (a layer imports only the ones above it in this list):

- ``mummi_ml.patch``      patch constants, validation, HDF5 files, features (numpy + h5py only)
- ``mummi_ml.continuum``  synthetic continuum membrane model and patch coupler
- ``mummi_ml.metric``     encoder, losses, training, the ``Metric`` model directory (PyTorch)
- ``mummi_ml.parallel``   launcher detection and torch.distributed set-up (MPI, Slurm, LSF, Flux)
- ``mummi_ml.evaluate``   overlap, MARE, AUC, baselines, reports
- ``mummi_ml.backends``   MD job backends: local processes, Slurm, Flux
- ``mummi_ml.selector``   the long-running in situ selector
- ``mummi_ml.cli``        the ``mummi-ml`` command
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
