"""The password hasher of tests and benches."""

from argon2 import PasswordHasher


def cheap_hasher() -> PasswordHasher:
    """Argon2 at its cheapest: tests and benches sign up users by the hundred, and what they
    check is the flow, not the hash's cost. The platform keeps argon2-cffi's defaults."""
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
