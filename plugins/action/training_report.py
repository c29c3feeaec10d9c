# Copyright: npufleet contributors
# Apache License 2.0
"""The action of npufleet.ascend.training_report: the report is computed and written here, on the
controller, where the fetched log is and matplotlib is installed (no delegate_to localhost)."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.npufleet.ascend.plugins.modules.training_report import SPEC
from ansible_collections.npufleet.ascend.plugins.plugin_utils.training_report import ReportError, write_report


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _, params = self.validate_argument_spec(
            argument_spec=SPEC["argument_spec"], required_if=SPEC["required_if"]
        )
        try:
            outcome = write_report(params, check_mode=bool(self._task.check_mode), diff=bool(self._task.diff))
        except ReportError as error:
            raise AnsibleActionFail(str(error)) from error
        result.update(outcome.result())
        return result
