"""The cart database: models (``models``) and schema versions (``migrations``)."""
