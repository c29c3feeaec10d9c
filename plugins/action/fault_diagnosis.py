# Copyright: npufleet contributors
# Apache License 2.0
"""The action of npufleet.ascend.fault_diagnosis: the evidence is on the controller, so is the diagnosis."""

from __future__ import annotations

import json
from pathlib import Path

from ansible.plugins.action import ActionBase
from ansible_collections.npufleet.ascend.plugins.modules.fault_diagnosis import SPEC
from ansible_collections.npufleet.ascend.plugins.plugin_utils.diagnosis import (
    diagnose,
    render_markdown,
    summary,
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _, params = self.validate_argument_spec(argument_spec=SPEC["argument_spec"])
        folder = Path(params["evidence_dir"]).resolve()
        if not folder.is_dir() and self._task.check_mode:
            # The evidence role's folders are not made in check mode.
            result.update(changed=False, msg=f"would diagnose the evidence in {folder}", files={})
            return result
        if not folder.is_dir():
            result.update(
                failed=True, msg=f"evidence_dir {folder} is not a folder: collect the evidence first"
            )
            return result
        found = diagnose([folder])
        line = summary(found)
        written = {}
        if not self._task.check_mode:
            report = folder / "diagnosis.md"
            report.write_text(render_markdown(found, params["title"]), encoding="utf-8")
            data = folder / "diagnosis.json"
            data.write_text(json.dumps({"summary": line, **found}, indent=2) + "\n", encoding="utf-8")
            written = {"markdown": str(report), "json": str(data)}
        result.update(
            changed=bool(written),
            summary=line,
            first=found["first"],
            matches=len(found["matches"]),
            files=written,
            msg=f"diagnosis: {line}",
        )
        return result
