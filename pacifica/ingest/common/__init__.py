"""The ground every layer stands on: settings, job states, errors, metrics, the queue's
bookkeeping, and where the configuration files are (``environment``).
"""
