"""HTTP only: the cart resource (``resources``), operations endpoints (``ops``) and the OpenAPI
document (``openapi``).
"""
