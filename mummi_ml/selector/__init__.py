"""mummi_ml.selector (see DESIGN.md)."""

__all__: list[str] = []
