"""The composition root of cartd (``bootstrap``) and the server composition the CLI and the WSGI
module share (``server``). Nothing below imports it.
"""
