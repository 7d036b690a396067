"""`choreo topics`: provision and list Choreo's Kafka topics."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from choreo.cli.common import JsonFlag, command_group, fail, out, print_json
from events.errors import ChoreoError
from events.settings import get_settings

app = command_group("Provision and list Choreo's Kafka topics.")


@app.command("create")
def topics_create(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the topics created as a JSON list.")
    ] = False,
) -> None:
    """Create the domain topics and the dead-letter topic that do not exist yet."""
    from events.topics import provision_topics  # aiokafka: see common

    try:
        created = asyncio.run(provision_topics(get_settings()))
    except ChoreoError as exc:
        fail(exc)
    if as_json:
        print_json(created)
    else:
        out.print(f"created: {', '.join(created)}" if created else "all topics exist")


@app.command("list")
def topics_list(as_json: JsonFlag = False) -> None:
    """The topics Choreo uses (event topics keep messages forever)."""
    from events.topics import all_topics  # aiokafka: see common

    names = all_topics(get_settings())
    if as_json:
        print_json(names)
    else:
        for name in names:
            out.print(name)
