"""The object API of the published 0.4 modules (``tarutils``, ``tasks``, ``orm``), behind the faces
at the package's top.
"""
