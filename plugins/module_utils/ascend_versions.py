# Copyright: npufleet contributors
# Apache License 2.0
"""Ascend driver, firmware and CANN version files, and the rules for which versions fit together.

Pure functions: text in, plain data out. Nothing here reads a file, runs a command or knows about
AnsibleModule, so the unit tests feed recorded files straight in. Node-side: Python 3.8+.

The files (``key=value`` lines):

- driver ``/usr/local/Ascend/driver/version.info``: ``Version``, ``Innerversion``,
  ``compatible_version_fw=[7.0.0,7.1.99]`` (firmware ranges) and
  ``compatible_version=[V100R001C29],[V100R001C30],...`` (CANN families, as singleton ranges);
- firmware ``/usr/local/Ascend/firmware/version.info``: ``Version``,
  ``compatible_version_drv=[23.0.rc3,23.0.rc3.],[23.0.0,23.0.0.]`` (driver ranges);
- CANN toolkit ``.../ascend-toolkit/latest/<arch>-linux/ascend_toolkit_install.info``: ``version``
  (``7.0.T10``, ``8.0.RC3``) and ``innerversion`` (``V100R001C13B222``).

Rules:

- Versions compare component-wise on ``.``-separated parts, case-insensitively
  (``8.0.RC3 == 8.0.rc3``). Numeric parts compare as numbers. At the same position a test build
  ``TNN`` sorts before a release candidate ``rcN``, which sorts before any number:
  ``7.0.T10 < 7.0.rc1 < 7.0.0`` and ``23.0.rc3 < 23.0.0 < 23.0.7``.
- A range ``[low,high]`` contains v when low <= v <= high, each bound compared on as many
  components as it has: firmware 7.1.0.11.220 is in ``[7.0.0,7.1.99]`` because 7.1.0 <= 7.1.99.
  A ``high`` ending in ``.`` (``23.0.0.``) is open above within its release line: the range holds
  every version >= low with the same first two components. The evidence is a firmware and a
  driver from one package (both say ``package_version=23.0.7``): the firmware's
  ``[23.0.0,23.0.0.]`` must hold that driver 23.0.7. (The recorded file's own note reads
  ``23.0.rc3.`` as "every patch of 23.0.rc3"; the same-package evidence needs the wider reading.)
- Driver and firmware fit when the firmware's ``Version`` is in one of the driver's
  ``compatible_version_fw`` ranges AND the driver's ``Version`` is in one of the firmware's
  ``compatible_version_drv`` ranges.
- A CANN toolkit fits the driver when its family, the ``V100R001C13`` prefix of ``innerversion``
  (``V\\d+R\\d+C\\d+``), is in the driver's ``compatible_version`` list. The toolkit's own
  ``compatible_version`` list is kept but not checked: the recorded toolkit and driver, from one
  working node, would fail it (driver family V100R001C15 is not in it).
- Pins: a driver or CANN version not among the accepted ones is a problem (compared as versions;
  the manual writes ``cann_8.0.rc3``, so a ``cann_`` prefix is dropped).
- Image: torch_npu's version must start with torch's ``major.minor.patch`` (torch 2.1.0 with
  torch_npu 2.1.0.post8 fits, torch's local part such as ``+cpu`` is ignored); the image's CANN
  must equal the host toolkit's when both exist, and its family must be in the driver's
  ``compatible_version`` when both are known; torch_npu missing is a problem only when required.
- What cannot be read is not guessed at: a check whose inputs are missing (no toolkit on the
  host, no ``compatible_version_fw`` line) is skipped, except that a missing driver or firmware
  ``version.info`` is itself a problem.

Every problem is a dict ``{"component", "found", "expected", "message"}``; ``found`` is the version
found, or ``"missing"``.
"""

from __future__ import annotations

import re

__all__ = [
    "IMAGE_PROBE",
    "MISSING",
    "cann_family",
    "host_facts",
    "host_problems",
    "image_problems",
    "in_range",
    "parse_image_report",
    "parse_key_values",
    "parse_ranges",
    "version_key",
]

MISSING = "missing"

_RANGE = re.compile(r"\[([^\]]*)\]")
_FAMILY = re.compile(r"^(V\d+R\d+C\d+)", re.IGNORECASE)
_RELEASE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")
_NUMBER = re.compile(r"^\d+$")
_RC = re.compile(r"^rc(\d*)$")
_TEST_BUILD = re.compile(r"^t(\d+)$")

# Sort ranks of one version component: test build < other text < release candidate < number.
_RANK_TEST, _RANK_TEXT, _RANK_RC, _RANK_NUMBER = 0, 1, 2, 3

# Run in an image as `docker run --rm --network none --entrypoint /bin/sh IMAGE -c IMAGE_PROBE`.
# POSIX sh only, and it always exits 0: a missing python, torch or toolkit file gives empty values.
# The Python part avoids single quotes (it sits in one) and runs on Python 2 too (prints nothing useful).
IMAGE_PROBE = r"""latest=/usr/local/Ascend/ascend-toolkit/latest
py=""
for candidate in python3 python; do
  if command -v "$candidate" >/dev/null 2>&1; then py=$candidate; break; fi
done
report=""
if [ -n "$py" ]; then
  report=$("$py" -c '
import sys
def version(*names):
    try:
        from importlib import metadata
    except ImportError:
        return ""
    for name in names:
        try:
            return metadata.version(name)
        except Exception:
            pass
    return ""
lines = ["python=%d.%d.%d" % tuple(sys.version_info[:3]),
         "torch=" + version("torch"), "torch_npu=" + version("torch_npu", "torch-npu")]
sys.stdout.write("\n".join(lines) + "\n")
' 2>/dev/null) || report=""
fi
if [ -z "$report" ]; then report="python=
torch=
torch_npu="; fi
printf '%s\n' "$report"
for file in "$latest"/*/ascend_toolkit_install.info "$latest"/ascend_toolkit_install.info; do
  if [ -f "$file" ] && [ -r "$file" ]; then
    printf 'cann_file=%s\n' "$file"
    while IFS= read -r line || [ -n "$line" ]; do
      case $line in
        ''|'#'*) ;;
        *) printf 'cann.%s\n' "$line" ;;
      esac
    done < "$file"
    break
  fi
done
exit 0
"""


def parse_key_values(text: str) -> dict:
    """``key=value`` lines as a dict (split at the first ``=``, both sides stripped; a repeated key
    keeps its last value). ``#`` and blank lines are skipped; other lines without ``=`` are kept,
    in order, in a list under ``"_unparsed"`` (present only when there are any)."""
    values: dict = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            values.setdefault("_unparsed", []).append(line)
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value.strip()
    return values


def parse_ranges(text: str | None) -> list[tuple[str, str]]:
    """``[low,high],[x],...`` as ``[(low, high), (x, x), ...]``; empty brackets are skipped.

    Raises ValueError for a bracket with more than two bounds."""
    ranges = []
    for inner in _RANGE.findall(text or ""):
        bounds = [bound.strip() for bound in inner.split(",")]
        if bounds == [""]:
            continue
        if len(bounds) == 1:
            ranges.append((bounds[0], bounds[0]))
        elif len(bounds) == 2 and all(bounds):
            ranges.append((bounds[0], bounds[1]))
        else:
            raise ValueError(f"[{inner}] is not a range: expected [low,high] or [version]")
    return ranges


def version_key(version: str) -> tuple:
    """A sort key for an Ascend version (rules in the module docstring)."""
    key = []
    for part in version.strip().lower().split("."):
        if _NUMBER.match(part):
            key.append((_RANK_NUMBER, int(part), ""))
            continue
        rc = _RC.match(part)
        if rc:
            key.append((_RANK_RC, int(rc.group(1) or 0), ""))
            continue
        test_build = _TEST_BUILD.match(part)
        if test_build:
            key.append((_RANK_TEST, int(test_build.group(1)), ""))
            continue
        key.append((_RANK_TEXT, 0, part))
    return tuple(key)


def _same_version(a: str, b: str) -> bool:
    return version_key(_without_cann_prefix(a)) == version_key(_without_cann_prefix(b))


def _without_cann_prefix(version: str) -> str:
    version = version.strip()
    return version[len("cann_") :] if version.lower().startswith("cann_") else version


def in_range(version: str, low: str, high: str) -> bool:
    """Whether ``low <= version <= high``, each bound compared on as many components as it has;
    a ``high`` ending in ``.`` holds every version of high's release line (first two components)."""
    key, low_key = version_key(version), version_key(low)
    if key[: len(low_key)] < low_key:
        return False
    if high.endswith("."):
        return key[:2] == version_key(high.rstrip("."))[:2]
    high_key = version_key(high)
    return key[: len(high_key)] <= high_key


def _in_any(version: str, ranges) -> bool:
    return any(in_range(version, low, high) for low, high in ranges)


def cann_family(innerversion: str | None) -> str | None:
    """``V100R001C13`` from ``V100R001C13B222`` (upper case), or None when it has no such prefix."""
    match = _FAMILY.match((innerversion or "").strip())
    return match.group(1).upper() if match else None


def _get(values: dict, key: str) -> str | None:
    """A value by case-insensitive key (the driver writes ``Innerversion``, the toolkit ``innerversion``)."""
    for name, value in values.items():
        if name.lower() == key.lower() and isinstance(value, str):
            return value or None
    return None


def host_facts(driver_text: str | None, firmware_text: str | None, toolkit_text: str | None) -> dict:
    """The versions a node's files state; a text of None is a missing file, whose entry is None.

    Returns ``{"driver": {"version", "innerversion", "compatible_fw": [[low, high], ...],
    "compatible": ["V100R001C29", ...]} | None, "firmware": {"version", "compatible_drv":
    [[low, high], ...]} | None, "toolkit": {"version", "innerversion", "family"} | None}``.
    Ranges are lists, so the facts look the same before and after JSON."""
    facts: dict = {"driver": None, "firmware": None, "toolkit": None}
    if driver_text is not None:
        values = parse_key_values(driver_text)
        facts["driver"] = {
            "version": _get(values, "Version"),
            "innerversion": _get(values, "Innerversion"),
            "compatible_fw": [list(pair) for pair in parse_ranges(_get(values, "compatible_version_fw"))],
            "compatible": [low.upper() for low, _ in parse_ranges(_get(values, "compatible_version"))],
        }
    if firmware_text is not None:
        values = parse_key_values(firmware_text)
        facts["firmware"] = {
            "version": _get(values, "Version"),
            "compatible_drv": [list(pair) for pair in parse_ranges(_get(values, "compatible_version_drv"))],
        }
    if toolkit_text is not None:
        values = parse_key_values(toolkit_text)
        innerversion = _get(values, "innerversion")
        facts["toolkit"] = {
            "version": _get(values, "version"),
            "innerversion": innerversion,
            "family": cann_family(innerversion),
        }
    return facts


def _ranges_text(ranges) -> str:
    return " or ".join(f"[{low},{high}]" for low, high in ranges)


def _problem(component: str, found: str | None, expected: str, message: str) -> dict:
    return {"component": component, "found": found or MISSING, "expected": expected, "message": message}


def _pin_problem(component: str, label: str, version: str, pins: list[str], fix: str) -> dict | None:
    accepted = [_without_cann_prefix(pin) for pin in pins]
    if any(_same_version(version, pin) for pin in accepted):
        return None
    listed = ", ".join(accepted)
    return _problem(
        component,
        version,
        f"one of {listed}",
        f"{label} {version} is not one of the accepted versions ({listed}): "
        f"{fix.format(accepted=' or '.join(accepted))}, or add {version} to the accepted versions "
        "if it is supported.",
    )


def _family_problem(what: str, version: str | None, family: str | None, driver: dict | None) -> dict | None:
    """The CANN family rule, for the host's toolkit or an image's CANN."""
    if not family or not driver or not driver["compatible"] or family in driver["compatible"]:
        return None
    listed = ", ".join(driver["compatible"])
    return _problem(
        "cann",
        version,
        f"a CANN of family {' or '.join(driver['compatible'])} "
        f"(driver {driver['version']}'s compatible_version)",
        f"{what} {version} (family {family}) does not fit driver {driver['version']}, whose "
        f"compatible_version lists {listed}: install a CANN of one of those families, or a driver "
        f"that lists {family}.",
    )


def host_problems(facts: dict, driver_versions=None, cann_versions=None) -> list[dict]:
    """What does not fit among a node's driver, firmware and toolkit (``host_facts``), and against
    the accepted ``driver_versions`` and ``cann_versions`` (empty or None: no pin)."""
    problems: list = []
    driver, firmware, toolkit = facts.get("driver"), facts.get("firmware"), facts.get("toolkit")
    driver_version = (driver or {}).get("version")
    firmware_version = (firmware or {}).get("version")
    if not driver_version:
        problems.append(
            _problem(
                "driver",
                None,
                "a driver version.info with a Version line",
                "No driver version was read (its version.info is missing or has no Version line): "
                "install the Ascend driver, or point the check at its version.info.",
            )
        )
    if not firmware_version:
        problems.append(
            _problem(
                "firmware",
                None,
                "a firmware version.info with a Version line",
                "No firmware version was read (its version.info is missing or has no Version line): "
                "install the Ascend firmware from the driver's package, or point the check at its "
                "version.info.",
            )
        )
    if driver_version and firmware_version:
        if driver["compatible_fw"] and not _in_any(firmware_version, driver["compatible_fw"]):
            ranges = _ranges_text(driver["compatible_fw"])
            problems.append(
                _problem(
                    "firmware",
                    firmware_version,
                    f"a firmware in {ranges} (driver {driver_version}'s compatible_version_fw)",
                    f"Firmware {firmware_version} does not fit driver {driver_version}, which takes a "
                    f"firmware in {ranges}: install the firmware from the driver's own package, or a "
                    f"driver whose compatible_version_fw holds {firmware_version}.",
                )
            )
        if firmware["compatible_drv"] and not _in_any(driver_version, firmware["compatible_drv"]):
            ranges = _ranges_text(firmware["compatible_drv"])
            problems.append(
                _problem(
                    "driver",
                    driver_version,
                    f"a driver in {ranges} (firmware {firmware_version}'s compatible_version_drv)",
                    f"Driver {driver_version} does not fit firmware {firmware_version}, which takes a "
                    f"driver in {ranges}: install a driver in those ranges, or the firmware from "
                    f"driver {driver_version}'s package.",
                )
            )
    if driver_version and driver_versions:
        problem = _pin_problem(
            "driver",
            "Driver",
            driver_version,
            driver_versions,
            "install driver {accepted} (and the firmware of its package)",
        )
        if problem:
            problems.append(problem)
    if toolkit and toolkit["version"] and cann_versions:
        problem = _pin_problem(
            "cann", "CANN toolkit", toolkit["version"], cann_versions, "install CANN toolkit {accepted}"
        )
        if problem:
            problems.append(problem)
    if toolkit:
        problem = _family_problem("CANN toolkit", toolkit["version"], toolkit["family"], driver)
        if problem:
            problems.append(problem)
    return problems


def parse_image_report(text: str) -> dict:
    """What ``IMAGE_PROBE`` printed, as ``{"python", "torch", "torch_npu": str | None,
    "cann": {"version", "innerversion", "family", "file"} | None}`` (empty values are None)."""
    values: dict = {}
    cann_lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("cann."):
            cann_lines.append(line[len("cann.") :])
        elif "=" in line:
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), value.strip() or None)
    cann = None
    if cann_lines:
        toolkit = host_facts(None, None, "\n".join(cann_lines))["toolkit"]
        cann = dict(toolkit, file=values.get("cann_file"))
    return {
        "python": values.get("python"),
        "torch": values.get("torch"),
        "torch_npu": values.get("torch_npu"),
        "cann": cann,
    }


def _release(version: str) -> tuple | None:
    """``(major, minor, patch)`` of a PyPI version (a missing patch is 0), or None."""
    match = _RELEASE.match(version.strip())
    if not match:
        return None
    return (int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))


def _public(version: str) -> str:
    """torch's version without its local part (``2.1.0+cpu`` -> ``2.1.0``)."""
    return version.split("+", 1)[0].strip()


def image_problems(
    image: dict, host_facts: dict, cann_versions=None, torch_versions=None, require_torch_npu=True
) -> list[dict]:
    """What does not fit in an image (``parse_image_report``), and between it and the node
    (``host_facts``), against the accepted ``cann_versions`` and ``torch_versions``."""
    problems: list = []
    torch, torch_npu, cann = image.get("torch"), image.get("torch_npu"), image.get("cann")
    host_facts = host_facts or {}
    if torch_versions:
        if not torch:
            accepted = ", ".join(torch_versions)
            problems.append(
                _problem(
                    "torch",
                    None,
                    f"one of {accepted}",
                    f"The image has no torch, the accepted versions are {accepted}: use an image with "
                    "one of them.",
                )
            )
        else:
            problem = _pin_problem(
                "torch", "torch", _public(torch), torch_versions, "use an image with torch {accepted}"
            )
            if problem:
                problems.append(problem)
    if torch_npu and torch:
        wanted = _release(_public(torch))
        if wanted and _release(torch_npu) != wanted:
            release = ".".join(str(number) for number in wanted)
            problems.append(
                _problem(
                    "torch_npu",
                    torch_npu,
                    f"a torch_npu {release}.* (built for torch {torch})",
                    f"torch_npu {torch_npu} is not built for torch {torch}, which needs a torch_npu "
                    f"{release}.*: install torch_npu {release} (pip install torch_npu=={release}.*), "
                    f"or the torch that torch_npu {torch_npu} is for.",
                )
            )
    elif torch_npu and not torch:
        problems.append(
            _problem(
                "torch",
                None,
                f"torch {'.'.join(str(n) for n in _release(torch_npu) or ())} for torch_npu {torch_npu}",
                f"The image has torch_npu {torch_npu} but no torch: install the torch it was built for.",
            )
        )
    elif not torch_npu and require_torch_npu:
        fits = f"a torch_npu built for torch {torch}" if torch else "torch with a matching torch_npu"
        has = f"torch {torch} but no torch_npu" if torch else "neither torch nor torch_npu"
        problems.append(
            _problem(
                "torch_npu",
                None,
                fits,
                f"The image has {has}, so it cannot use the NPUs: install {fits}, or use one of the "
                "Ascend PyTorch images.",
            )
        )
    if cann and cann.get("version"):
        toolkit = host_facts.get("toolkit")
        if toolkit and toolkit.get("version") and not _same_version(cann["version"], toolkit["version"]):
            problems.append(
                _problem(
                    "cann",
                    cann["version"],
                    f"CANN {toolkit['version']} (the node's toolkit)",
                    f"The image's CANN {cann['version']} differs from the node's CANN toolkit "
                    f"{toolkit['version']}: use an image built on CANN {toolkit['version']}, or "
                    f"install toolkit {cann['version']} on the node.",
                )
            )
        if cann_versions:
            problem = _pin_problem(
                "cann",
                "The image's CANN",
                cann["version"],
                cann_versions,
                "use an image built on CANN {accepted}",
            )
            if problem:
                problems.append(problem)
        problem = _family_problem(
            "The image's CANN", cann["version"], cann.get("family"), host_facts.get("driver")
        )
        if problem:
            problems.append(problem)
    return problems
