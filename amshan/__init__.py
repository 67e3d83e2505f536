"""amshan: read and decode the customer port (HAN) data stream of European smart electricity meters."""

from amshan._errors import DecodeError

__version__ = "2.0.0"
__all__ = ["DecodeError", "__version__"]
