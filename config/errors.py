class ConfigError(Exception):
    """A configuration problem the administrator must fix; its message is shown as is, without a traceback."""
