"""Export: SavedModel with a raw-input serving signature (TFLite variants live in compression)."""
