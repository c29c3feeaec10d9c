# Copyright: npufleet contributors
# Apache License 2.0
"""The action of npufleet.ascend.job_gate_report: every node's readings are in hostvars here, on the
controller, where the job is judged as a whole."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.npufleet.ascend.plugins.filter.job_gate import collect, job_gate_report
from ansible_collections.npufleet.ascend.plugins.modules.job_gate_report import SPEC


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _, params = self.validate_argument_spec(argument_spec=SPEC["argument_spec"])
        facts = collect(params["hosts"], (task_vars or {}).get("hostvars") or {}, params["readings"])
        report = job_gate_report(
            facts, params["npus"], params["ports"], params["net_health_init"], params["network"]
        )
        result.update(
            changed=False,
            table=report["table"],
            problems=report["problems"],
            warnings_found=report["warnings"],
            reachability=report["reachability"],
            servers=[{"server_id": fact["server_id"], "npus": fact["npus"]} for fact in facts],
        )
        if report["problems"]:
            result["failed"] = True
            result["msg"] = "\n".join(
                [f"the job cannot start: {len(report['problems'])} problem(s) found before launch"]
                + report["problems"]
                + ["", "what the gate read:"]
                + report["table"]
            )
        else:
            result["msg"] = "\n".join(report["table"] + [f"WARNING: {line}" for line in report["warnings"]])
        return result
