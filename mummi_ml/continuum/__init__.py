"""mummi_ml.continuum (see DESIGN.md)."""

__all__: list[str] = []
