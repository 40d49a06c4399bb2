"""Facts every package needs and no package owns: where the repository is (`common.paths`), how an
unknown name is reported (`common.names`) and what an exit code means (`common.exit_codes`).
Imports nothing of the project."""
