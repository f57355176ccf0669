"""GraphQL execution with a short path for plain leaf fields (most of what a page of rows holds).

A profile of `tasks(first: 50)` (bench/graphql.py: 50 rows of 12 fields, 600 field executions a
request) put 48% of the gateway's time in graphql-core and strawberry, and most of that in the
per-field machinery: a `GraphQLResolveInfo` built for each field, argument coercion, the
resolver's awaitable check, then `complete_value`'s dispatch to the leaf. For a field with no
resolver of its own, no arguments and a scalar or enum type, all that computes one attribute
read and one `coerce_output_value`; this does exactly those two steps and hands every other
field (objects, lists, resolvers, arguments, nulls, values that do not coerce) to graphql-core's
own path, which then reports errors as it always does.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLObjectType, Undefined, get_nullable_type, is_leaf_type
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class PlainLeafExecution(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, with plain leaf fields read and coerced directly."""

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: object,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any = None,
    ) -> object:
        node = field_details_list[0].node
        field_def = parent_type.fields.get(node.name.value)
        if field_def is not None and not node.arguments:
            resolve = field_def.resolve
            if self.middleware_manager:  # an extension that wraps resolvers keeps its say
                resolve = self.middleware_manager.get_field_resolver(resolve)
            # Strawberry marks the resolver of a field without one of its own (a plain
            # attribute read, with no permission classes or field extensions) `_is_default`.
            leaf = get_nullable_type(field_def.type)
            if getattr(resolve, "_is_default", False) and is_leaf_type(leaf):
                value = resolve(source, None)
                if value is not None and not self.is_awaitable(value):
                    coerced = leaf.coerce_output_value(value)
                    if coerced is not None and coerced is not Undefined:
                        return coerced
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )
