"""Sub-commands of ``aquami``: each module defines ``register(app: typer.Typer) -> None``.

Keep imports of heavy libraries inside the command functions so that ``aquami --help`` stays fast.
"""
