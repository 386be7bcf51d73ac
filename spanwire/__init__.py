"""spanwire: distributed, routed network virtualization for multi-provider OpenStack clouds."""

__version__ = "0.1.0"
