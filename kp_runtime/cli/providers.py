"""``kp-runtime providers``: each provider, whether it is available (and why not), its devices."""

from __future__ import annotations

import argparse
import json
from typing import Any

from kp_runtime import plugins


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "providers",
        help="list execution providers, their availability and devices",
        description="List every registered execution provider (highest priority first), "
        "whether it is available and why not, its devices, and plugins that failed to load.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(func=run)


def collect() -> dict[str, Any]:
    """Providers and plugin failures as plain data."""
    rows = []
    for provider in plugins.providers():
        available = plugins.availability(provider)
        try:
            devices = [
                {"id": d.id, "type": d.type, "description": d.description, "properties": dict(d.properties)}
                for d in (provider.list_devices() if available else [])
            ]
            device_error = ""
        except Exception as exc:  # noqa: BLE001 - report, don't crash the listing
            devices, device_error = [], f"{type(exc).__name__}: {exc}"
        rows.append({
            "name": provider.name,
            "aliases": list(provider.aliases),
            "priority": provider.priority,
            "model_formats": list(provider.model_formats),
            "available": available.available,
            "reason": available.reason,
            "devices": devices,
            "device_error": device_error,
        })
    failures = [
        {"name": f.name, "origin": f.origin, "error": f.error} for f in plugins.plugin_failures()
    ]
    return {"providers": rows, "failed_plugins": failures}


def run(args: argparse.Namespace) -> int:
    data = collect()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for row in data["providers"]:
        aliases = f" ({', '.join(row['aliases'])})" if row["aliases"] else ""
        state = "available" if row["available"] else f"unavailable: {row['reason'] or 'no reason given'}"
        print(f"{row['name']}{aliases}  priority={row['priority']}  formats={','.join(row['model_formats'])}  {state}")
        for device in row["devices"]:
            print(f"    device {device['id']} [{device['type']}] {device['description']}".rstrip())
        if row["device_error"]:
            print(f"    listing devices failed: {row['device_error']}")
    if not data["providers"]:
        print("no execution providers registered")
    for failure in data["failed_plugins"]:
        print(f"plugin {failure['name']!r} failed ({failure['origin']}): {failure['error']}")
    return 0
