"""Facts every package needs and no package owns: where the repository is (`common.paths`) and how an
unknown name is reported (`common.names`). Imports nothing of the project."""
