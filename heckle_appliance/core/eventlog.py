"""flunky.log: the event log, in the original's line format.

``<asctime> - <LEVEL> - <message>``. A WatchedFileHandler reopens the file
when logrotate moves it away, so rotation needs no signal.
"""

import logging
import logging.handlers
import sys

FORMAT = "%(asctime)s - %(levelname)s - %(message)s"

# Messages carry text from nodes and packets: a newline in one must not
# start a line of its own that reads like a genuine event.
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(32), 127)}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


class OneLineFormatter(logging.Formatter):
    """One event, one line: control characters in the message are escaped."""

    def formatMessage(self, record):
        record.message = record.message.translate(_CONTROL)
        return super().formatMessage(record)


def open_event_log(path, echo=True, level=logging.INFO):
    """Send the ``heckle`` logger to ``path`` and to ``echo``: True for
    stderr, a logging.Handler of the caller's, or False for nowhere else."""
    logger = logging.getLogger("heckle")
    close_event_log()
    logger.setLevel(level)
    logger.propagate = False
    handlers = [logging.handlers.WatchedFileHandler(path, encoding="utf-8")]
    if echo is True:
        handlers.append(logging.StreamHandler(sys.stderr))
    elif echo:
        handlers.append(echo)
    for handler in handlers:
        handler.setFormatter(OneLineFormatter(FORMAT))
        logger.addHandler(handler)
    return logger


def reopen_event_log():
    """Reopen flunky.log if it was moved (SIGHUP from logrotate's postrotate)."""
    for handler in logging.getLogger("heckle").handlers:
        if isinstance(handler, logging.handlers.WatchedFileHandler):
            handler.reopenIfNeeded()


def close_event_log():
    logger = logging.getLogger("heckle")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
