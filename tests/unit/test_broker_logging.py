"""The brokers' logger: an event handed back at the drain deadline is one line, not a traceback."""

from __future__ import annotations

import asyncio
import logging

import pytest

from handlers.background import BROKER_LOGGER, broker_logger


def test_a_cancelled_handler_is_a_warning_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = broker_logger()
    with caplog.at_level(logging.DEBUG, logger=BROKER_LOGGER):
        logger.log(logging.ERROR, "CancelledError: cancelled", exc_info=asyncio.CancelledError())
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert "handed back" in record.getMessage()
    assert "Traceback" not in caplog.text


def test_any_other_error_keeps_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    logger = broker_logger()
    with caplog.at_level(logging.DEBUG, logger=BROKER_LOGGER):
        try:
            raise RuntimeError("a real failure")
        except RuntimeError as error:
            logger.log(logging.ERROR, "RuntimeError: a real failure", exc_info=error)
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert "Traceback" in caplog.text
