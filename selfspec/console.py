"""Terminal output shared by the command-line entry points."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape


def print_error(console: Console, err: object, *, label: str = "error:", style: str = "bold red") -> None:
    """Print an error whose text may hold [field.paths]; escaped so rich does not eat them as markup."""
    console.print(f"[{style}]{escape(label)}[/] {escape(str(err))}", highlight=False)
