"""maya_tools 2.1.0 (variant python-3.11)."""

__version__ = "2.1.0"
BUILT_FOR = "python-3.11"
