"""CLI sub-commands (one module per command, each with run(args) -> exit code)."""
