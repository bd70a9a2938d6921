"""alpr-edge: an edge daemon for fixed automated licence plate recognition cameras."""

__version__ = "0.1.0"
