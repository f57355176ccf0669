"""Command models, command handlers (load, decide, append) and the command bus."""
