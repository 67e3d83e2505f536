"""``amshan serve``'s web side: a live page of the meter, a JSON API, Prometheus metrics (``amshan[web]``)."""

from amshan.web.app import create_app, start_server
from amshan.web.history import History, HistoryError, HistoryFile
from amshan.web.hub import MeterHub

__all__ = ["History", "HistoryError", "HistoryFile", "MeterHub", "create_app", "start_server"]
