"""Qt widgets of the holo napari plugin (orchestration only)."""
