"""The ``npufleet`` command line.

Exit codes: 0 success; 1 a play or lab step failed (one line on stderr says where and why);
2 bad usage or input; 3 the environment is missing something (no Docker engine, no debootstrap);
4 a play ran past --timeout and was stopped; 130 interrupted (Ctrl-C: the run is cancelled).

The package, one job a module: ``parser`` (commands and options), ``stages`` (the commands that
run a stage's playbook), ``live`` (the live view while a play runs), ``lab``, ``reports`` (report,
endpoints), ``bench``, and ``output`` (exit codes, console, JSON).
"""

from __future__ import annotations

import logging

from rich.markup import escape

from npufleet.cli.output import EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, console
from npufleet.cli.parser import build_parser
from npufleet.lab.containers import LabError

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    # Messages are escaped: printed as they are ("[0, 1]", "x[2]" are not rich markup).
    try:
        return args.func(args)
    except LabError as error:
        console.print(f"npufleet: {escape(str(error))}", highlight=False)
        return EXIT_ENVIRONMENT if "Docker engine" in str(error) else EXIT_FAILED
    except (ValueError, FileNotFoundError) as error:
        console.print(f"npufleet: {escape(str(error))}", highlight=False)
        return EXIT_USAGE
    except RuntimeError as error:
        console.print(f"npufleet: {escape(str(error))}", highlight=False)
        return EXIT_ENVIRONMENT
    except KeyboardInterrupt:
        console.print("npufleet: interrupted")
        return EXIT_INTERRUPTED
