"""``npufleet report`` and ``npufleet endpoints``: what the train and serve roles left on the controller."""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from npufleet.cli.output import EXIT_FAILED, print_json
from npufleet.collection import project_root


def reports_dir() -> Path:
    return project_root() / "reports" / "train"


def serve_records_dir() -> Path:
    return project_root() / "reports" / "serve"


def latest_diagnosis(folder: Path) -> Path | None:
    """The newest diagnosis.json of a failed training run (reports/train/<run>/) that named a failure."""
    found = sorted(folder.glob("*/diagnosis.json"), key=lambda path: path.stat().st_mtime)
    for path in reversed(found):
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("first"):
                return path
        except ValueError:
            continue
    return None


def cmd_report(args: argparse.Namespace) -> int:
    """Print a training report written by the train role (the latest run by default), and the
    diagnosis of the latest failed run when it is newer."""
    folder = Path(args.dir) if args.dir else reports_dir()
    runs = sorted(
        (path.parent for path in folder.glob("*/report.json")), key=lambda path: path.stat().st_mtime
    )
    diagnosis = latest_diagnosis(folder)
    if args.run:
        chosen = folder / args.run
        if not (chosen / "report.json").is_file():
            known = ", ".join(path.name for path in runs) or "none"
            raise ValueError(f"no report for run {args.run!r} in {folder} (runs with a report: {known})")
    elif runs:
        chosen = runs[-1]
    elif diagnosis:
        chosen = None
    else:
        raise ValueError(f"no training report in {folder}: run 'npufleet train' (or 'npufleet up') first")
    newer = bool(diagnosis and not args.run)
    if newer and chosen is not None:
        newer = diagnosis.stat().st_mtime > (chosen / "report.json").stat().st_mtime
    if args.json and not newer:
        print((chosen / "report.json").read_text(encoding="utf-8"))
        return 0
    if args.json:
        data = json.loads((chosen / "report.json").read_text(encoding="utf-8")) if chosen else {}
        if newer:
            data["diagnosis"] = json.loads(diagnosis.read_text(encoding="utf-8"))
        print(json.dumps(data, indent=2))
        return 0
    if chosen:
        print((chosen / "report.md").read_text(encoding="utf-8"), end="")
        print(f"\n(report: {chosen / 'report.md'}; loss plot: {chosen / 'loss.png'})")
    if newer:
        summary = json.loads(diagnosis.read_text(encoding="utf-8")).get("summary", "")
        print(f"\nThe latest failed run ({diagnosis.parent}): {summary}")
        print(f"(diagnosis: {diagnosis.with_suffix('.md')}; evidence: {diagnosis.parent / 'nodes'})")
    return 0


API_KEY_ENV = "NPUFLEET_API_KEY"


def _answers(url: str, api_key: str = "", timeout: float = 3.0) -> tuple[str, list[dict]]:
    """What ``GET {url}/models`` says: "yes" and the models listed (id, owned_by), or why not
    (a server with an API key answers 401 to a request without it)."""
    request = urllib.request.Request(f"{url}/models")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status != 200:
                return f"HTTP {response.status}", []
            listed = json.loads(response.read() or b"{}").get("data") or []
            return "yes", [{"id": item.get("id"), "owned_by": item.get("owned_by")} for item in listed]
    except urllib.error.HTTPError as error:
        needs = f" (it needs an API key: set {API_KEY_ENV})" if error.code == 401 and not api_key else ""
        return f"HTTP {error.code}{needs}", []
    except (urllib.error.URLError, OSError, ValueError) as error:
        return f"no ({getattr(error, 'reason', error)})", []


def cmd_endpoints(args: argparse.Namespace) -> int:
    """Where each served model answers (the records the serve role wrote), and a request to try."""
    folder = Path(args.dir) if args.dir else serve_records_dir()
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            url = str(record["url"]).rstrip("/")
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{path} is not a service record ({error}): delete it, then run 'npufleet serve'"
            ) from None
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{path}: url {url!r} is not http(s): delete it, then run 'npufleet serve'")
        answers, models = _answers(url, os.environ.get(API_KEY_ENV, ""))
        records.append(record | {"url": url, "answers": answers, "models": models})
    if not records:
        raise ValueError(
            f"no served model is recorded in {folder}: run 'npufleet serve' (or 'npufleet up') first"
        )
    if args.json:
        print_json(records)
    else:
        # Lines, not a table: URLs and the curl line must stay whole on a narrow or piped terminal.
        for record in records:
            where = f"{record.get('name', '?')} on {record.get('host', '?')} ({record.get('engine', '?')})"
            print(
                f"{where}: model {record.get('model', '?')} at {record['url']}, answers: {record['answers']}"
            )
            if record["models"]:
                listed = ", ".join(f"{item['id']} (owned_by {item['owned_by']})" for item in record["models"])
                print(f"  /v1/models: {listed}")
        first = next((record for record in records if record["answers"] == "yes"), records[0])
        body = json.dumps(
            {
                "model": first.get("model", ""),
                "messages": [{"role": "user", "content": "Hello!"}],
                "max_tokens": 32,
            }
        )
        print("try it:")
        # The key stays in the environment: the line names the variable, never its value.
        auth = f' -H "Authorization: Bearer ${API_KEY_ENV}"' if first.get("api_key_required") else ""
        headers = f"-H 'Content-Type: application/json'{auth}"
        print(f"  curl -s {first['url']}/chat/completions {headers} -d '{body}'")
    return 0 if any(record["answers"] == "yes" for record in records) else EXIT_FAILED
