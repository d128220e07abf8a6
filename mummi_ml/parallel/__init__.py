"""mummi_ml.parallel (see DESIGN.md)."""

__all__: list[str] = []
