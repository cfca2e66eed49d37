"""The ``wsnas spaces`` and ``wsnas arch show`` commands: the registered search spaces, one architecture.

Attached to the main command with ``main.add_command(spaces_cmd)`` and ``main.add_command(arch_group)``.
torch loads inside ``arch show`` only; bad input prints one ``error: ...`` line on stderr and exits with
status 2 (see :mod:`wsnas.cli`).
"""

from __future__ import annotations

import json

import click

from wsnas.cli._common import CliError, ErrorLineGroup, parse_size, size_option

__all__ = ["spaces_cmd", "arch_group"]


@click.command("spaces")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")
def spaces_cmd(as_json: bool) -> None:
    """List the registered search spaces: name, size (or "unbounded") and description."""
    from wsnas.search_spaces import get_space, space_names

    rows = []
    for name in space_names():
        space = get_space(name)
        rows.append({"name": name, "size": space.size, "description": space.description})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max(len(r["name"]) for r in rows)
    size_w = max(len(f"{r['size']:,}" if r["size"] is not None else "unbounded") for r in rows)
    for r in rows:
        size = f"{r['size']:,}" if r["size"] is not None else "unbounded"
        click.echo(f"{r['name']:<{width}}  {size:>{size_w}}  {r['description']}")


@click.group("arch", cls=ErrorLineGroup)
def arch_group() -> None:
    """Inspect architectures."""


@arch_group.command("show")
@click.argument("space_name", metavar="SPACE")
@click.argument("text", metavar="STRING")
@size_option("Network size keyword for the space's build (repeatable), e.g. -s C=16 -s N=5.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def arch_show(space_name: str, text: str, size_items: tuple[str, ...], as_json: bool) -> None:
    """Validate STRING as an architecture of SPACE and print its parameters, FLOPs and graph.

    Params and FLOPs are those of the network ``build`` makes at the space's default size (change it
    with --size); FLOPs count one forward pass of one image at the space's input shape.
    """
    from wsnas._netstats import count_flops, count_params
    from wsnas.search_spaces import get_space

    space = get_space(space_name)
    arch = space.from_string(text)
    size = parse_size(size_items)
    try:
        net = space.build(arch, **size)
    except (TypeError, ValueError) as exc:
        raise CliError(f"{space.name} cannot be built with size {size}: {exc}") from None
    doc = {
        "space": space.name,
        "string": space.to_string(arch),
        "hash": arch.hash,
        "size": size,
        "params": count_params(net),
        "flops": count_flops(net, space.input_shape),
        "input_shape": list(space.input_shape),
        "graph": arch.to_dict(),
    }
    if as_json:
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    click.echo(f"space   {doc['space']}")
    click.echo(f"string  {doc['string']}")
    click.echo(f"hash    {doc['hash']}")
    click.echo(f"size    {size or 'default'}")
    click.echo(f"params  {doc['params']:,}")
    click.echo(f"FLOPs   {doc['flops']:,} (one {'x'.join(map(str, space.input_shape))} input)")
    click.echo("graph")
    g = arch.graph
    for v, data in g.nodes(data=True):
        extra = {k: val for k, val in data.items() if k != "op"}
        click.echo(f"  node {v}: {data['op']}" + (f" {extra}" if extra else ""))
    for u, v, data in g.edges(data=True):
        label = data.get("op", "")
        extra = {k: val for k, val in data.items() if k != "op"}
        click.echo(f"  edge {u} -> {v}" + (f": {label}" if label else "") + (f" {extra}" if extra else ""))

