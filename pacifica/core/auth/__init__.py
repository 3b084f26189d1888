"""Who is asking: API tokens, OIDC bearer tokens, the identity header of a trusted proxy, and the
anonymous loopback user; the protected mode that keeps an unconfigured service to loopback."""
