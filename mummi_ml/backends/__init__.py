"""mummi_ml.backends (see DESIGN.md)."""

__all__: list[str] = []
