# Copyright: npufleet contributors
# Apache License 2.0
"""Diagnosis across nodes: the fault catalogue applied to every node's logs, the matches put in time
order, and the first failure named (the earliest cause, not the loudest line).

Controller side (Python 3.11). The catalogue is plugins/module_utils/fault_signatures.py, the same
table llm_launch stops a launch on. Evidence is read from files: an evidence folder
(``.../nodes/<host>/...``, one folder per node) or log files given by hand.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from ansible_collections.npufleet.ascend.plugins.module_utils.evidence import redact
from ansible_collections.npufleet.ascend.plugins.module_utils.fault_signatures import SIGNATURES
from ansible_collections.npufleet.ascend.plugins.module_utils.launch_log import signature_regex

# A file larger than this is read from its end: the failure is near the end of a log.
READ_LIMIT = 8 * 1024 * 1024
# At most this many matches of one signature in one file are kept (a retry loop repeats its line).
MATCHES_PER_SIGNATURE = 20
LINE_LIMIT = 400

# Every entry, in the catalogue's order (a line goes to the first that matches it).
_COMPILED = tuple((signature_regex(entry), entry) for entry in SIGNATURES)

# Time stamps as Ascend's and the frameworks' logs write them, most specific first:
# CANN and HCCL "2025-07-23-03:47:57.070.463"; ISO and Python logging "2024-10-09 10:06:30,123";
# glog (torch's C++ "[E324 13:00:25.428029551", month 3, day 24; torch elastic's Python logging
# "E1202 15:23:57.477000" at a line start), which has no year.
_CANN_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})-(\d{2}):(\d{2}):(\d{2})(?:\.(\d{3})\.(\d{3}))?")
_ISO_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?(Z|[+-]\d{2}:?\d{2}(?!\d))?"
)
# A zone as the collector records it ("+0800") or a stamp carries it ("Z", "+08:00").
_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")
_GLOG_TIME = re.compile(r"(?:^|[\[\s])[EWIF](\d{1,2})(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{1,9})")
# vLLM's logger: "(APIServer pid=156) INFO 12-03 06:12:04 [api_utils.py:347]", no year either.
_VLLM_TIME = re.compile(
    r"\b(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) (\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?"
    r" \[?[\w.]+:\d+\]"
)

# Which rank printed a line: torch's "[rank1]:" and "[Rank 1]", CANN's "RankID:1", HCCL's "rank[12]".
_LINE_RANK = re.compile(r"\[rank(\d+)\]|\[Rank (\d+)\]|RankID:(\d+)|\brank\[(\d+)\]")
# A log file named for its rank: the train role's "<run>-rank<node rank>.log", "rank_3.log".
_FILE_RANK = re.compile(r"rank[-_]?(\d+)", re.IGNORECASE)


def _micro(fraction: str | None) -> int:
    return int((fraction or "0").ljust(6, "0")[:6])


def utc_offset(text: str | None) -> datetime.timedelta | None:
    """``+0800``, ``-05:30`` or ``Z`` as a time difference from UTC; None for anything else."""
    if text == "Z":
        return datetime.timedelta(0)
    match = _OFFSET.fullmatch(text or "")
    if not match:
        return None
    minutes = int(match.group(2)) * 60 + int(match.group(3))
    return datetime.timedelta(minutes=-minutes if match.group(1) == "-" else minutes)


def line_time(
    line: str, year: int | None = None, offset: datetime.timedelta | None = None
) -> datetime.datetime | None:
    """The time stamp a log line starts with or carries, or None. ``year`` completes glog's stamps.
    A stamp that names its zone is put in UTC; one that does not is taken in ``offset``'s zone (the
    writer's, where the collector recorded it), or as it is when that is not known."""
    match = _CANN_TIME.search(line)
    if match:
        parts = [int(part) for part in match.groups()[:6]]
        micro = int(match.group(7) or 0) * 1000 + int(match.group(8) or 0)
        return _in_utc(_safe_datetime(*parts, micro), offset)
    match = _ISO_TIME.search(line)
    if match:
        parts = [int(part) for part in match.groups()[:6]]
        own = utc_offset(match.group(8)) if match.group(8) else None
        return _in_utc(_safe_datetime(*parts, _micro(match.group(7))), own if own is not None else offset)
    match = _GLOG_TIME.search(line) or _VLLM_TIME.search(line)
    if match and year:
        month, day, hour, minute, second = (int(part) for part in match.groups()[:5])
        return _in_utc(_safe_datetime(year, month, day, hour, minute, second, _micro(match.group(6))), offset)
    return None


def _in_utc(stamp: datetime.datetime | None, offset: datetime.timedelta | None) -> datetime.datetime | None:
    return stamp - offset if stamp is not None and offset is not None else stamp


def _safe_datetime(*parts: int) -> datetime.datetime | None:
    try:
        return datetime.datetime(*parts)
    except ValueError:
        return None


def line_rank(line: str) -> int | None:
    match = _LINE_RANK.search(line)
    if not match:
        return None
    return int(next(group for group in match.groups() if group is not None))


def scan_text(
    text: str,
    file: str,
    node: str | None = None,
    *,
    offset: datetime.timedelta | None = None,
    year: int | None = None,
    written: datetime.datetime | None = None,
) -> list[dict]:
    """Every catalogue match in one log: ``{id, cause, fix, source, symptom, node, rank, file, line_no,
    line, time}`` (time an ISO string or None). A line with no time stamp of its own takes the last one
    above it (a traceback under its log line), or the first one of the file when none is above."""
    file_rank = _FILE_RANK.search(os.path.basename(file))
    matches, counts = [], {}
    # The year for stamps without one (glog's, vLLM's), until a stamp with a year says otherwise.
    first_time, last_time = None, None
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("# "):
            # A note a person or a collector put in the log (the recorded fixtures' source lines).
            continue
        stamp = line_time(line, year, offset)
        if stamp and written and stamp > written + datetime.timedelta(days=1):
            # A year-less stamp from late December in a file collected in January.
            stamp = _safe_datetime(stamp.year - 1, *stamp.timetuple()[1:6], stamp.microsecond) or stamp
        if stamp:
            last_time, year = stamp, stamp.year
            first_time = first_time or stamp
        for regex, entry in _COMPILED:
            if not regex.search(line):
                continue
            counts[entry["id"]] = counts.get(entry["id"], 0) + 1
            if counts[entry["id"]] <= MATCHES_PER_SIGNATURE:
                rank = line_rank(line)
                if rank is None and file_rank:
                    rank = int(file_rank.group(1))
                matches.append(
                    {
                        "id": entry["id"],
                        "cause": entry["cause"],
                        "fix": entry["fix"],
                        "source": entry["source"],
                        "symptom": entry["symptom"],
                        "node": node,
                        "rank": rank,
                        "file": file,
                        "line_no": number,
                        # Logs given by hand were not redacted on the way: the report may travel.
                        "line": redact(line.strip())[0][:LINE_LIMIT],
                        "time": (stamp or last_time).isoformat() if (stamp or last_time) else None,
                    }
                )
            break
    for match in matches:
        if match["time"] is None and first_time:
            match["time"] = first_time.isoformat()
    return matches


def read_tail(path: Path, limit: int = READ_LIMIT) -> str:
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - limit))
        return handle.read().decode("utf-8", errors="replace")


def evidence_files(paths: Iterable[str | Path]) -> list[tuple[Path, str | None, str]]:
    """(file, node, name) for each file under the paths. In an evidence folder the node is the folder
    under ``nodes/``, and the name is relative to the folder given (the bundle can move); a file given
    by hand has no node and keeps the name it was given by."""
    found = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: give log files or an evidence folder")
        if path.is_file():
            found.append((path, None, str(given)))
            continue
        for file in sorted(item for item in path.rglob("*") if item.is_file()):
            parts = file.relative_to(path).parts
            node = parts[parts.index("nodes") + 1] if "nodes" in parts[:-2] else None
            found.append((file, node, str(file.relative_to(path))))
    return found


def writer_offset(file: Path, manifests: dict) -> datetime.timedelta | None:
    """The UTC offset of whoever wrote a file of an evidence folder, from its node's MANIFEST.json: a
    container's for its own files, the containers' (when they agree) for the launched processes' logs,
    the node's for the rest. None outside an evidence folder, or where it was not recorded."""
    node_dir = next((parent for parent in file.parents if parent.parent.name == "nodes"), None)
    if node_dir is None:
        return None
    if node_dir not in manifests:
        try:
            manifest = json.loads((node_dir / "MANIFEST.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = {}
        manifests[node_dir] = manifest.get("utc_offsets") or {} if isinstance(manifest, dict) else {}
    offsets = manifests[node_dir]
    containers = offsets.get("containers") or {}
    parts = file.relative_to(node_dir).parts
    value = offsets.get("node")
    # The running containers' zone, where they agree: that of the launched processes' logs, and the
    # best guess for a stopped container's (one that crashed has no offset of its own recorded).
    agreed = next(iter(containers.values())) if len(set(containers.values())) == 1 else value
    if parts[0] == "containers" and len(parts) > 2:
        value = containers.get(parts[1], agreed)
    elif parts[0] == "logs":
        value = agreed
    return utc_offset(value) if isinstance(value, str) else None


def _is_text(path: Path) -> bool:
    with path.open("rb") as handle:
        return b"\0" not in handle.read(4096)


def _order(match: dict) -> tuple:
    # Timed matches first, by time; then the rest in the order they were read.
    return (match["time"] is None, match["time"] or "", match["_seen"])


def _rank_from_node(matches: list[dict], files: list[tuple[Path, str | None, str]]) -> None:
    """A line that names no rank (HCCL's plog lines name a pid) on a node that ran one rank: the
    node's rank logs (their names say the rank) all name the same one, and no line names another."""
    ranks: dict[str, set] = {}
    for _, node, name in files:
        found = _FILE_RANK.search(os.path.basename(name))
        if node and found:
            ranks.setdefault(node, set()).add(int(found.group(1)))
    for match in matches:
        if match["node"] and match["rank"] is not None:
            ranks.setdefault(match["node"], set()).add(match["rank"])
    for match in matches:
        known = ranks.get(match["node"]) if match["node"] else None
        if match["rank"] is None and known and len(known) == 1:
            match["rank"] = next(iter(known))


def diagnose(paths: Iterable[str | Path]) -> dict:
    """The diagnosis of the logs under ``paths``: every match in time order, the first failure (the
    earliest match that is a cause; the earliest symptom when no cause was found), and the other
    matches as its consequences."""
    matches, manifests = [], {}
    files = evidence_files(paths)
    for file, node, name in files:
        # The bundle's own records are not logs (a NOT_COLLECTED.txt quotes the connection's error).
        skipped = ("MANIFEST.json", "NOT_COLLECTED.txt", "inspect.json", "diagnosis.json", "diagnosis.md")
        if not _is_text(file) or name.endswith(skipped):
            continue
        # A collected file's time is when it was collected: its year completes stamps that have none.
        written = (
            datetime.datetime.fromtimestamp(file.stat().st_mtime, tz=datetime.UTC).replace(tzinfo=None)
            if node
            else None
        )
        year = written.year if written else None
        offset = writer_offset(file, manifests)
        matches += scan_text(read_tail(file), name, node, offset=offset, year=year, written=written)
    for seen, match in enumerate(matches):
        match["_seen"] = seen
    _rank_from_node(matches, files)
    matches.sort(key=_order)
    causes = [match for match in matches if not match["symptom"]]
    first = (causes or matches or [None])[0]
    for match in matches:
        del match["_seen"]
    return {
        "files": len(files),
        "matches": matches,
        "first": first,
        "consequences": [match for match in matches if match is not first],
        "nodes": sorted({match["node"] for match in matches if match["node"]}),
    }


def summary(diagnosis: dict) -> str:
    """One line for the CLI's failure line: what failed first, where, and the fix."""
    first = diagnosis["first"]
    if not first:
        return "no known failure signature matched"
    where = " ".join(
        part
        for part in (
            first["node"] or os.path.basename(first["file"]),
            f"rank {first['rank']}" if first["rank"] is not None else "",
            f"at {first['time']}" if first["time"] else "",
        )
        if part
    )
    return f"{first['id']} on {where}: {first['cause']}; fix: {first['fix']}"


def render_markdown(diagnosis: dict, title: str = "Diagnosis") -> str:
    """The report: the first failure with its line, cause and fix, then every other match."""
    lines = [f"# {title}", ""]
    first = diagnosis["first"]
    if not first:
        lines += [f"No known failure signature matched in {diagnosis['files']} file(s).", ""]
        return "\n".join(lines)
    lines += [
        "## First failure",
        "",
        f"- signature: `{first['id']}`",
        f"- node: {first['node'] or '-'}",
        f"- rank: {first['rank'] if first['rank'] is not None else '-'}",
        f"- time: {first['time'] or '-'}",
        f"- line: `{first['file']}:{first['line_no']}`",
        "",
        "```",
        first["line"],
        "```",
        "",
        f"**Cause**: {first['cause']}.",
        "",
        f"**Fix**: {first['fix']}.",
        "",
        f"Source: {first['source']}",
        "",
    ]
    if diagnosis["consequences"]:
        lines += ["## Other matches (consequences, in time order)", "",
                  "| time | node | rank | signature | line |", "|---|---|---|---|---|"]  # fmt: skip
        for match in diagnosis["consequences"]:
            text = match["line"][:160].replace("|", "\\|")
            rank = match["rank"] if match["rank"] is not None else "-"
            lines.append(
                f"| {match['time'] or '-'} | {match['node'] or '-'} | {rank} | `{match['id']}` | {text} |"
            )
        lines.append("")
    return "\n".join(lines)
