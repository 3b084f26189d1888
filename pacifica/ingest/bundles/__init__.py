"""Bundles themselves: the metadata document and its Files objects (``document``), reading the tar
(``tar``), and the digests taken while it arrives (``digests``). Pure: no network, no database.
"""
