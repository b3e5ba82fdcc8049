"""Data layer: AnnData -> cell sentences -> corpus records."""
