"""FastStream apps: the AI agents and the integration consumers."""
