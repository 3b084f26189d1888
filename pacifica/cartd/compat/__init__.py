"""The object API of the published 0.7 modules (``utils``, ``orm``), behind the faces at the
package's top.
"""
