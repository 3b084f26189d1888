"""The services cartd talks to: the archive interface (``archive``) and the embedded ingest's
record of who may read which file (``file_access``).
"""
