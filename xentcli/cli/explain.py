"""`xent explain`: what a diagnostic means, why it matters, how to fix it."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from xentcli.cli.app import app, console, guarded
from xentcli.diagnostics import RULES
from xentcli.errors import OptionError
from xentcli.plain import quoted


@app.command()
def explain(
    code: Annotated[Optional[str], typer.Argument(help="A diagnostic code (XE202); all codes when left out.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Explain a diagnostic: what it means, why it matters, how to fix it, with an example.

    Example: [bold]xent explain XE202[/]
    """
    guarded(False, lambda: _explain(code, as_json), as_json)


def _explain(code: str | None, as_json: bool) -> None:
    rules = list(RULES.values())
    if code is not None:
        wanted = code.strip().upper()
        exact = [rule for rule in rules if rule.code == wanted or rule.name == code.strip().lower()]
        # a family, as --select takes it (XE2: the label rules), where no code is named exactly
        rules = exact or ([rule for rule in rules if rule.code.startswith(wanted)] if wanted.startswith("XE") else [])
        if not rules:
            raise OptionError(f"no diagnostic {quoted(code)}", hint="run 'xent explain' for the list")
    single = code is not None and len(rules) == 1
    if as_json:
        docs = [rule.doc() for rule in rules]
        sys.stdout.write(json.dumps(docs[0] if single else docs, indent=2, ensure_ascii=False) + "\n")
    else:
        from xentcli.render.table import render_explain

        render_explain(rules, single=single, console=console())
