"""Facts every package needs and no package owns: where the repository is (`common.paths`), how an
unknown name is reported (`common.names`), what an exit code means (`common.exit_codes`) and how a
report's markdown table is written (`common.tables`). Imports nothing of the project."""
