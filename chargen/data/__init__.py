"""The data layer: corpus registry and resolution, text hygiene, splits and batching."""
