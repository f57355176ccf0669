"""The embedded Ollama-compatible model server (ARCHITECTURE.md §9), run as a child process."""
