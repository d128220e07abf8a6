"""mummi_ml.metric (see DESIGN.md)."""

__all__: list[str] = []
