"""discnode: a partnership's node for consent-based, peer-to-peer sharing of offender profiles."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
