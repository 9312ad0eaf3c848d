"""chargen: a character-level text studio built on recurrent cells written from their equations."""

__version__ = "0.1.0"
