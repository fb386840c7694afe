"""The keyed digital layer: source coding, channel coding, modulation and synchronisation of a compressed secret.

``DigitalLayer`` (``layer.py``) is the part the hiding model composes beside the analog path; ``DigitalConfig``
(``config.py``) its levels; ``keys.py`` the keys every pattern derives from.
"""

from pipeline.model.digital.config import DigitalConfig, Level
from pipeline.model.digital.keys import PUBLIC, Key, generate_key_file, read_key_file, resolve_key

__all__ = ["PUBLIC", "DigitalConfig", "Key", "Level", "generate_key_file", "read_key_file", "resolve_key"]
