"""`choreo tokens`: the API's and the console's tokens (create, list, revoke).

A token is printed once, when it is created; the token file keeps only its Argon2 hash
(:mod:`projections.tokens`). The running API notices a changed file at its next request.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from choreo.cli.common import JsonFlag, command_group, console, fail, out, print_json, readable
from events.errors import ChoreoError
from events.settings import get_settings
from projections.tokens import ApiSettings, Role, TokenFile

app = command_group("Create, list and revoke the HTTP API's and the console's tokens.")


def _file() -> TokenFile:
    return TokenFile(ApiSettings().token_file(get_settings()))


@app.command("create")
def tokens_create(
    role: Annotated[
        Role, typer.Option(help="viewer (reads) or operator (also approves, rejects, redrives).")
    ],
    name: Annotated[
        str, typer.Option(help="Who uses it; decisions are recorded under this name.")
    ] = "",
    unless_exists: Annotated[
        bool,
        typer.Option("--unless-exists", help="Do nothing if a token of this name and role exists."),
    ] = False,
    saga_types: Annotated[
        list[str] | None,
        typer.Option(
            "--saga-type",
            help="An operator answers only these saga types' human tasks (repeat the option for"
            " more; default: every type) and redrives no dead letters.",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the token and its record as JSON.")
    ] = False,
) -> None:
    """Create a token and print it (once: only its hash is stored)."""
    scope = _scope(role, saga_types)
    file = _file()
    name = name or f"{role}-{len(file.read()) + 1}"
    try:
        if unless_exists and any(r.name == name and r.role == role for r in file.read()):
            console.print(
                f"an {role} token named {name!r} exists in {file.path} (shown when it was"
                " created; `choreo tokens revoke ID` and create another if it is lost)"
                if role == "operator"
                else f"a {role} token named {name!r} exists in {file.path}"
            )
            return
        token, record = file.create(name, role, scope)
    except ChoreoError as exc:
        fail(exc)
    if as_json:
        print_json({"token": token, "record": record.model_dump(mode="json")})
        return
    out.print(token, soft_wrap=True, highlight=False)
    scoped = f", answering {', '.join(scope)} sagas only" if scope else ""
    console.print(
        f"{role} token {record.id} ({name}{scoped}) stored as a hash in {file.path};"
        " this is the only time it is shown."
    )


def _scope(role: Role, saga_types: list[str] | None) -> list[str] | None:
    """The saga types an operator token is scoped to, checked against the saga definitions."""
    if not saga_types:
        return None
    if role != "operator":
        fail(ChoreoError("--saga-type scopes an operator's answers; a viewer answers nothing"))
    from sagas.shipped import SAGAS

    unknown = sorted(set(saga_types) - set(SAGAS.types))
    if unknown:
        fail(ChoreoError(f"no saga type {', '.join(unknown)}; known: {', '.join(SAGAS.types)}"))
    return sorted(set(saga_types))


@app.command("list")
def tokens_list(as_json: JsonFlag = False) -> None:
    """The tokens of the token file: id, name, role, created (never the tokens)."""
    file = _file()
    try:
        records = file.read()
    except ChoreoError as exc:
        fail(exc)
    if as_json:
        print_json([r.model_dump(mode="json", exclude={"hash"}) for r in records])
        return
    table = Table("id", "name", "role", "created")
    for r in records:
        role = r.role if r.saga_types is None else f"{r.role}\n[dim]{', '.join(r.saga_types)}[/]"
        table.add_row(r.id, r.name, role, r.created_at.isoformat()[:19] if r.created_at else "")
    out.print(readable(table, "id"))
    console.print(f"{len(records)} token(s) in {file.path}")


@app.command("revoke")
def tokens_revoke(token_id: Annotated[str, typer.Argument(help="The id from `list`.")]) -> None:
    """Revoke a token: the API refuses it, and its console sessions end, from the next request."""
    try:
        record = _file().revoke(token_id)
    except ChoreoError as exc:
        fail(exc)
    console.print(f"revoked {record.role} token {record.id} ({record.name})")
