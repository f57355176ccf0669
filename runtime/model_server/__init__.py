"""The embedded Ollama-compatible model server (docs/architecture.md §9), run as a child process."""
