"""Settings, the composition root, the `sutazai` CLI and the embedded server stack."""
