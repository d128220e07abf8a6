"""mummi_ml.evaluate (see DESIGN.md)."""

__all__: list[str] = []
