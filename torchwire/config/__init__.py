"""One typed settings tree: command line > environment > config.properties > defaults.

Where a new key goes:

- a server-wide key: one field of :class:`~torchwire.config.settings.Settings` in
  ``settings.py``, declared with ``setting(converter, default)``; nothing else to list
  (the converter, the ``TORCHWIRE_<KEY>``/``TS_<KEY>`` variables and the file key all
  follow from the field).  Document it in docs/configuration.md.
- a per model version key: one field of :class:`~torchwire.config.models.ModelSettings`
  in ``models.py``, declared with ``setting(converter, aliases=(TorchServe spellings))``;
  its concrete value goes in ``ServingConfig`` (same module, filled by ``resolve``), and
  its server-wide default, if any, in ``ModelStore._defaults``.
- a new kind of value: a converter in ``values.py`` (``convert(value, key)``, raising
  ``ConfigError`` via ``invalid``); addresses live in ``addresses.py``.

Key names are TorchServe's ``config.properties`` keys, and each is also the name of
a :class:`Settings` field.  The environment is read only when :func:`load_settings`
is called: ``TORCHWIRE_<KEY>`` wins over ``TS_<KEY>`` (key upper-cased, e.g.
``TS_INFERENCE_ADDRESS``); empty variables count as not set.  The config file is
``config_path``, else ``TORCHWIRE_CONFIG_FILE`` / ``TS_CONFIG_FILE``, else the first
existing file of ``TORCHWIRE_CONFIG_SEARCH`` (``:``-separated), else none.
Relative paths are resolved against the working directory, as TorchServe does.
Every invalid value raises :class:`~torchwire.errors.ConfigError` naming the source,
the key, the value and what was expected.  This package is the only place that reads
the environment.
"""

from torchwire.config.addresses import Address, parse_address
from torchwire.config.models import (
    ModelSettings,
    ServingConfig,
    model_settings_from_mapping,
    resolve,
)
from torchwire.config.properties import parse_properties
from torchwire.config.settings import (
    DEFAULT_ALLOWED_URLS,
    IGNORED_KEYS,
    SETTING_KEYS,
    Settings,
    config_file_from_env,
    load_settings,
    warn_unknown_keys,
)
from torchwire.config.values import Converter

__all__ = [
    "DEFAULT_ALLOWED_URLS",
    "IGNORED_KEYS",
    "SETTING_KEYS",
    "Address",
    "Converter",
    "ModelSettings",
    "ServingConfig",
    "Settings",
    "config_file_from_env",
    "load_settings",
    "model_settings_from_mapping",
    "parse_address",
    "parse_properties",
    "resolve",
    "warn_unknown_keys",
]
