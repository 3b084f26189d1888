"""The job database: models and the state functions (``models``), the schema versions
(``migrations``), and the state answer every API gives (``responses``).
"""
