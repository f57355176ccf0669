"""Which refusals the coordinator's sweep expects from a read model behind the log.

Those are skipped quietly; any other domain error (`Forbidden` above all) is logged as an error.
"""

from __future__ import annotations

import inspect

import pytest

import domain.errors
from commands.guard import Forbidden
from domain.errors import DomainError
from handlers.task_coordinator import MOVED_ON

DOMAIN_ERRORS = [
    error
    for _, error in inspect.getmembers(domain.errors, inspect.isclass)
    if issubclass(error, DomainError)
]


def test_forbidden_and_the_base_class_are_never_expected() -> None:
    assert DomainError not in MOVED_ON
    assert not issubclass(Forbidden, MOVED_ON)


@pytest.mark.parametrize("error", MOVED_ON)
def test_each_expected_refusal_is_a_domain_error_a_stale_row_explains(
    error: type[DomainError],
) -> None:
    assert error in DOMAIN_ERRORS
    assert error.code != Forbidden.code
