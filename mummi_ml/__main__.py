"""``python -m mummi_ml`` is the same as the ``mummi-ml`` command."""

from mummi_ml.cli import main

raise SystemExit(main())
