"""What the ingest and cart services share: reading settings, versioned database schemas."""
