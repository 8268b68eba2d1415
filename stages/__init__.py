"""One module per pipeline stage, each callable as ``run(folder, params)`` and ``python -m stages.<name> FOLDER``."""
