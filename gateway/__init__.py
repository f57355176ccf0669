"""The GraphQL gateway: schema, auth, subscriptions and the Starlette app."""
