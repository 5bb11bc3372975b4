class StartupError(Exception):
    """The service cannot start; the message is printed as one line and the process exits non-zero."""
