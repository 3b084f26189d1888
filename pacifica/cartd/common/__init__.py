"""The ground: settings, metrics, and where the configuration files are (``environment``)."""
