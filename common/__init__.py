"""MIADeepSSL shared library: data, models, methods, losses, metrics, training engine, plots.

Scripts in the numbered folders import from here; see the repository README for the map.
"""

__version__ = "0.1.0"
