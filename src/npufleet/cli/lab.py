"""``npufleet lab``: simulated Ascend nodes on the local Docker engine (up, status, down, fault)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from npufleet.cli.output import console, print_json
from npufleet.collection import default_inventory
from npufleet.lab import faults, lifecycle


def _nodes_table(found: list[lifecycle.Node]) -> Table:
    table = Table("node", "address", "status", "NPUs")
    for node in found:
        table.add_row(
            node.name, node.address or "-", node.status, str(node.npus if node.npus is not None else "-")
        )
    return table


def cmd_lab(args: argparse.Namespace) -> int:
    inventory = Path(args.inventory) if getattr(args, "inventory", None) else None
    if args.action == "up":
        with console.status(f"starting {args.nodes} lab node(s) with {args.npus} x {args.chip} each"):
            found = lifecycle.up(
                args.lab,
                args.nodes,
                args.npus,
                args.chip,
                inventory=inventory,
                flavour=args.flavour,
                with_registry=args.registry,
                with_training=args.workload == "training",
            )
        if args.json:
            print_json({"nodes": found, "inventory": str(inventory or default_inventory())})
        else:
            Console().print(_nodes_table(found))
            console.print(f"inventory: {inventory or default_inventory()}")
    elif args.action == "status":
        found = lifecycle.status(args.lab)
        if args.json:
            print_json({"nodes": found})
        elif found:
            Console().print(_nodes_table(found))
        else:
            console.print(f"lab {args.lab} has no nodes")
    elif args.action == "down":
        removed = lifecycle.down(args.lab, inventory, purge=args.purge)
        if args.json:
            print_json(removed)
        else:
            console.print(
                f"removed {len(removed['containers'])} container(s), {len(removed['networks'])} network(s), "
                f"{len(removed['volumes'])} volume(s)" + (", the inventory" if removed.get("files") else "")
            )
    return 0


def cmd_lab_build(args: argparse.Namespace) -> int:
    flavours = tuple(args.flavour or lifecycle.FLAVOURS)
    with console.status(f"building the lab's images ({', '.join(flavours)} nodes, {args.workload} workload)"):
        tags = lifecycle.build(flavours, with_training=args.workload == "training")
    if args.json:
        print_json({"images": tags})
    else:
        for tag in tags:
            console.print(tag)
    return 0


def cmd_fault(args: argparse.Namespace) -> int:
    message = faults.fault(args.lab, args.node, args.kind, args.npu, args.value)
    if args.json:
        print_json({"node": args.node, "fault": args.kind, "message": message})
    else:
        console.print(message)
    return 0
