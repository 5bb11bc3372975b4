from config.business import BusinessConfig, load_business_config
from config.errors import ConfigError
from config.settings import Settings, load_settings

__all__ = ["BusinessConfig", "ConfigError", "Settings", "load_business_config", "load_settings"]
