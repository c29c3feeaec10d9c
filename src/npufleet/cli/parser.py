"""The command line's parser: every command, its options and its help."""

from __future__ import annotations

import argparse

from npufleet import __version__
from npufleet.api import STAGES
from npufleet.cli import bench as bench_commands
from npufleet.cli import diagnose as diagnose_commands
from npufleet.cli import lab as lab_commands
from npufleet.cli import reports, stages
from npufleet.lab import faults, lifecycle

DEFAULT_LAB = "npufleet-lab"

# The commands that run a stage (npufleet.api.STAGES) as it is: command, stage, help.
STAGE_COMMANDS = (
    ("up", "site", "run the main job: preflight, node setup, image, NPU container, training, serving"),
    ("check", "preflight", "run the preflight checks only"),
    ("train", "train", "train on the NPU containers and write the report"),
    ("serve", "serve", "serve a model from the NPU containers behind health gates"),
    ("down", "teardown", "stop what npufleet started on the nodes (processes, NPU container)"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="npufleet",
        description="Bring up LLM training and inference on Ascend NPU servers, or on a simulated lab.",
        epilog="Exit codes: 0 ok, 1 a step failed, 2 bad usage or input, 3 missing engine or tool, "
        "4 a play ran past --timeout, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the lab does")
    sub = parser.add_subparsers(dest="command", required=True)
    # --json after the subcommand too (npufleet diagnose x.log --json); absent there, it leaves the
    # global flag as it was.
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="the same as npufleet --json"
    )

    lab = sub.add_parser("lab", help="simulated Ascend nodes on the local Docker engine")
    lab_sub = lab.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False, parents=[output])
    common.add_argument("--lab", default=DEFAULT_LAB, help="lab name, prefix of every object it creates")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--inventory", help="the lab's inventory file (default inventories/lab/hosts.yml)")

    up = lab_sub.add_parser("up", parents=[common, where], help="start the nodes (builds the image once)")
    up.add_argument("--nodes", type=int, default=2, help="number of nodes (default 2)")
    up.add_argument("--npus", type=int, default=8, help="simulated NPUs per node (default 8)")
    up.add_argument("--chip", default="910B3", help="chip type npu-smi reports (default 910B3)")
    up.add_argument(
        "--flavour",
        default="bare",
        choices=lifecycle.FLAVOURS,
        help="bare: a fresh server, site.yml installs Docker (default); full: Docker already installed",
    )
    up.add_argument(
        "--no-registry",
        dest="registry",
        action="store_false",
        help="skip the lab registry and its workload image (the image stage then needs your own)",
    )
    up.add_argument(
        "--workload",
        default="training",
        choices=("training", "base"),
        help="training: build the LLaMA-Factory CPU image, a tiny model and datasets, and point the image"
        " and train stages at them (default); base: only the small workload image in the lab registry",
    )
    build = lab_sub.add_parser(
        "build",
        parents=[common],
        help="build the lab's images ahead of 'lab up', starting nothing",
        description="Builds the node images of the flavours named, the lab registry's image and the workload"
        " image it serves, and with --workload training the LLaMA-Factory and vLLM CPU images. Images"
        " already built are kept.",
    )
    build.add_argument(
        "--flavour",
        action="append",
        choices=lifecycle.FLAVOURS,
        help="a node flavour to build, once per flavour (default: every flavour)",
    )
    build.add_argument(
        "--workload",
        default="base",
        choices=("training", "base"),
        help="base: only the small workload image (default); training: also the training and inference"
        " images",
    )
    build.set_defaults(func=lab_commands.cmd_lab_build)
    lab_sub.add_parser("status", parents=[common], help="list the nodes")
    down = lab_sub.add_parser("down", parents=[common, where], help="remove everything the lab made")
    down.add_argument("--purge", action="store_true", help="also remove the cached node images")
    for action in (up, lab_sub.choices["status"], down):
        action.set_defaults(func=lab_commands.cmd_lab)

    fault = lab_sub.add_parser(
        "fault",
        parents=[common],
        help="inject a fault into a node (or clear them)",
        description=(
            "unhealthy: a chip's health (--value, default Alarm); busy: a process on an NPU; held: a "
            "container inside the node holds /dev/davinciN; driver: another driver version; npus: fewer "
            "NPUs; disk: a small work dir (--value MiB); error: npu-smi fails; link: an NPU's link down; "
            "net_health: its net health (--value Fault or Init); tls: TLS on for one NPU; device_ip: "
            "/etc/hccn.conf and the NPU's address disagree; unreachable: peers get no answer from an NPU; "
            "port: a process listens on --value PORT; versions: other versions (--value "
            "driver=V,firmware=V,cann=V); clear: undo every fault."
        ),
    )
    fault.add_argument("node", help="node name, as 'npufleet lab status' lists it")
    fault.add_argument("kind", choices=faults.FAULTS)
    fault.add_argument("--npu", type=int, default=0, help="NPU id for the faults of one NPU (default 0)")
    fault.add_argument(
        "--value", help="health word, driver version, NPU count, MiB, error text, port, versions"
    )
    fault.set_defaults(func=lab_commands.cmd_fault)

    options = argparse.ArgumentParser(add_help=False, parents=[output])
    options.add_argument("-i", "--inventory", help="inventory (default: the lab's inventories/lab/hosts.yml)")
    options.add_argument("-l", "--limit", help="only these hosts (Ansible pattern)")
    options.add_argument("-t", "--tags", help="only tasks with these tags")
    options.add_argument(
        "-e",
        "--extra-var",
        dest="extra_vars",
        action="append",
        metavar="KEY=VALUE|@FILE",
        help="a variable for the play, as ansible-playbook's -e: VALUE as JSON when it is a list, mapping,"
        " number or true/false, else a string; @FILE a YAML/JSON file of them. Secrets are refused: they"
        " belong in the inventory's Ansible Vault",
    )
    options.add_argument("--check", action="store_true", help="Ansible check mode: report, change nothing")
    options.add_argument("--diff", action="store_true", help="show what files would change (with --check)")
    options.add_argument(
        "--timeout", type=float, help="stop the play after this many seconds (exit 4; default: no limit)"
    )
    options.add_argument(
        "--mitogen",
        action="store_true",
        help="run through Mitogen for Ansible (strategy mitogen_linear): faster re-runs; see the README",
    )
    vault = options.add_mutually_exclusive_group()
    vault.add_argument("--vault-password-file", help="file holding the Ansible Vault password")
    vault.add_argument("--ask-vault-pass", action="store_true", help="prompt for the Vault password")

    for name, stage, text in STAGE_COMMANDS:
        run = sub.add_parser(name, help=text, parents=[options])
        run.set_defaults(func=stages.cmd_stage, playbook=STAGES[stage])
        if name == "down":
            run.add_argument("--images", action="store_true", help="also remove the workload image")
            run.add_argument("--work-dir", action="store_true", help="also delete the work dir on the nodes")
            run.add_argument(
                "--system-settings",
                action="store_true",
                help="also remove the metadata guard and the ip_forward sysctl file",
            )
            run.set_defaults(func=stages.cmd_down)
    collect = sub.add_parser(
        "collect",
        parents=[options],
        help="gather every node's evidence (logs, plogs, npu-smi, hccn_tool, dmesg) and diagnose it",
        description="Runs collect.yml: each node's evidence, bounded and redacted, into"
        " reports/<stage>/<UTC time>/nodes/<host>/, then the diagnosis (diagnosis.md, .json) beside it."
        " A failed up, train, serve or bench does this by itself.",
    )
    collect.add_argument("--stage", default="collect", help="the stage the evidence is for (default collect)")
    collect.add_argument(
        "--since",
        metavar="SPAN|TIME",
        help="only logs written since then: a span back from now (30m, 2h, 1d) or a UTC time"
        " (2026-12-03T05:30:00Z); default: all of them",
    )
    collect.set_defaults(func=stages.cmd_collect, playbook="collect.yml")
    endpoints = sub.add_parser(
        "endpoints",
        parents=[output],
        help="where the served models answer (URL, model, a curl line to try)",
        description="Reads the records the serve role writes for each service that passed its health"
        " gates, asks each for /v1/models, and prints a request to try. Exit 1 when none answers.",
    )
    endpoints.add_argument("--dir", help="records folder (default reports/serve in the checkout)")
    endpoints.set_defaults(func=reports.cmd_endpoints)
    report = sub.add_parser(
        "report", parents=[output], help="print a training report (the latest run by default)"
    )
    report.add_argument("run", nargs="?", help="run name (train_name); default: the latest report")
    report.add_argument("--dir", help="reports folder (default reports/train in the checkout)")
    report.set_defaults(func=reports.cmd_report)
    diagnose = sub.add_parser(
        "diagnose",
        parents=[output],
        help="name the first failure in logs or an evidence folder, with its cause and fix",
        description="Applies the fault catalogue (plugins/module_utils/fault_signatures.py) to the files"
        " given, or to every file under a folder (an evidence folder's nodes/<host>/ name the nodes), and"
        " names the earliest cause across them. Exit 0 when a signature matched, 1 when none did.",
    )
    diagnose.add_argument("paths", nargs="+", metavar="PATH", help="log files or folders")
    diagnose.set_defaults(func=diagnose_commands.cmd_diagnose)

    bench = sub.add_parser(
        "bench",
        parents=[options],
        help="benchmark an OpenAI-compatible server (TTFT, TPOT, ITL, throughput)",
        description="With --url and --model: the load generator, from here. Without --url: bench.yml on"
        " the served model of the inventory (-i): its bench_* settings, over which only the load options"
        " given here win.",
    )
    # Load options default to None: with -i, only those given override the inventory's bench_* (the role's
    # defaults are the rest); with --url, those not given take bench_commands.URL_DEFAULTS (the same values).
    bench.add_argument("--url", help="server base URL, for example http://127.0.0.1:8000")
    bench.add_argument("--model", help="model name the server serves (with an inventory: bench_model)")
    bench.add_argument("--endpoint", choices=("chat", "completions"), help="API (default chat)")
    bench.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        help="stream the answers (default); --no-stream asks for whole answers (TTFT = E2E)",
    )
    load = bench.add_mutually_exclusive_group()
    load.add_argument("--concurrency", help="requests in flight, or a sweep: 1,4,16,64 (default 1,4,16)")
    load.add_argument("--rate", help="requests per second, or a sweep: 1,2,4")
    bench.add_argument("--arrival", choices=("poisson", "constant"), help="with --rate (default poisson)")
    bench.add_argument("--requests", type=int, help="requests per level (default 100)")
    bench.add_argument("--input-tokens", type=int, help="synthetic prompt length in words (default 128)")
    bench.add_argument("--output-tokens", type=int, help="max_tokens of each request (default 128)")
    bench.add_argument(
        "--dataset",
        help="JSONL file of prompts ('prompt' or 'messages', 'max_tokens', 'ignore_eos'); with --backend"
        " vllm, a file in the serving container ('prompt' lines: vllm bench serve's custom dataset)",
    )
    bench.add_argument("--warmup", type=int, help="requests sent first and not counted (default 2)")
    bench.add_argument("--request-timeout", dest="timeout_per_request", type=float,
                       help="seconds one request may take (default 600)")  # fmt: skip
    bench.add_argument("--slo-ttft-ms", type=float, help="goodput: TTFT at most this")
    bench.add_argument("--slo-tpot-ms", type=float, help="goodput: TPOT at most this")
    bench.add_argument("--slo-e2e-ms", type=float, help="goodput: E2E latency at most this")
    bench.add_argument(
        "--backend",
        choices=("npufleet", "vllm"),
        help="without --url: the bench role's bench_backend (vllm: vllm bench serve in the container)",
    )
    bench.add_argument(
        "--out", help="report folder (default reports/bench/latest; with an inventory: the role's bench_dest)"
    )
    url_only = bench.add_argument_group("with --url only (the bench role has no such setting)")
    url_only.add_argument("--max-concurrency", type=int, help="with --rate: at most this many in flight")
    url_only.add_argument("--no-ignore-eos", action="store_true", help="let the model stop before max_tokens")
    url_only.add_argument("--image", help="send this image (base64) with --text: multimodal chat requests")
    url_only.add_argument("--text", help="the text beside --image (default 'What is in the image?')")
    url_only.add_argument(
        "--stop-token-ids", type=int, nargs="+", help="stop_token_ids (InternVL: 0 92543 92542)"
    )
    url_only.add_argument("--seed", type=int, help="the synthetic prompts' random seed (default 0)")
    bench.add_argument(
        "--api-key-env",
        metavar="NAME",
        help=f"with --url: the environment variable holding the server's API key (default"
        f" {bench_commands.API_KEY_ENV}); the key itself is never an option. With an inventory:"
        " serve_api_key, in its Vault",
    )
    bench.set_defaults(func=bench_commands.cmd_bench)
    return parser
