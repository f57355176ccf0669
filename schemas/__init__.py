"""The wire contract: pydantic event and command schemas, JSON Schema and AsyncAPI export."""
