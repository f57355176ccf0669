"""The GraphQL schema: queries, mutations and subscriptions, with depth, size and error rules."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import strawberry
from graphql import ASTValidationRule, GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
    max_aliases,
    query_depth_limiter,
)
from strawberry.printer import print_schema
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from gateway.errors import TypedErrors
from gateway.execution import PlainLeafExecution
from gateway.mutations import Mutation
from gateway.queries import Query
from gateway.subscriptions import Subscription
from gateway.types import TASK_TYPE_SCALAR, TaskType


def _config() -> StrawberryConfig:
    """The custom scalars of the schema (beside strawberry's own, such as JSON)."""
    return StrawberryConfig(scalar_map={TaskType: TASK_TYPE_SCALAR})


class _Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Nothing: `TypedErrors` logs the unexpected ones; the rest are answers, not faults."""


def build_schema(
    *,
    max_depth: int,
    max_tokens: int,
    max_aliases_count: int,
    count_error: Callable[[str], None] = lambda code: None,
) -> strawberry.Schema:
    """The schema with its limits: query depth, tokens (a cost bound) and aliases."""
    # The rules are made once: a validation is cached by (document, rules), so rules made anew
    # per request would never hit the cache.
    rules: list[type[ASTValidationRule]] = [
        query_depth_limiter.create_validator(max_depth, None, None),
        max_aliases.create_validator(max_aliases_count),
    ]
    return _Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=_config(),
        execution_context_class=PlainLeafExecution,
        extensions=[
            # Factories, not instances: each operation gets extensions of its own.
            partial(MaxTokensLimiter, max_token_count=max_tokens),
            partial(ParserCache, maxsize=512),
            partial(AddValidationRules, rules),
            partial(ValidationCache, maxsize=512),
            partial(TypedErrors, count_error),
        ],
    )


def sdl() -> str:
    """The schema in SDL: what `schemas/published/schema.graphql` publishes (limits aside)."""
    schema = _Schema(query=Query, mutation=Mutation, subscription=Subscription, config=_config())
    return print_schema(schema) + "\n"
