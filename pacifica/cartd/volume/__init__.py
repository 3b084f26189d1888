"""The cart volume: carts, their files and eviction (``store``), progress files (``progress``), and
the tar laid out from staged files (``tarlayout``).
"""
