# Copyright: npufleet contributors
# Apache License 2.0
"""The action of npufleet.ascend.llm_benchmark: backend npufleet runs the load generator here, on the
controller (plugin_utils/bench, the entry point the CLI calls too); backend vllm hands the task to the
module on the node, which runs `vllm bench serve` in the serving container."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.npufleet.ascend.plugins.modules.llm_benchmark import (
    SPEC,
    check_mode_result,
    task_result,
)

MODULE = "npufleet.ascend.llm_benchmark"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    # A benchmark sends load: check mode sends none, and says what would run (check_mode_result).
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _, params = self.validate_argument_spec(**SPEC)
        if self._task.check_mode:
            if params["backend"] == "npufleet":
                # The checks a run starts with (options, dataset, load settings), short of sending.
                try:
                    self._entry().prepare(dict(self._task.args))
                except ValueError as error:
                    raise AnsibleActionFail(str(error)) from error
            result.update(check_mode_result(params))
            return result
        if params["backend"] == "vllm":
            # The task's own arguments, not the validated ones: those carry every default, and the
            # module would count concurrency and rate as both given.
            result.update(self._execute_module(module_name=MODULE, module_args=dict(self._task.args),
                                               task_vars=task_vars))  # fmt: skip
            return result
        try:
            outcome = self._entry().run_benchmark(dict(self._task.args))
        except ValueError as error:
            raise AnsibleActionFail(str(error)) from error
        result.update(task_result(outcome, params["url"]))
        return result

    @staticmethod
    def _entry():
        """The load generator's entry point (its aiohttp and matplotlib load for backend npufleet only)."""
        try:
            from ansible_collections.npufleet.ascend.plugins.plugin_utils.bench import entry  # noqa: PLC0415
        except ImportError as error:
            raise AnsibleActionFail(
                f"backend npufleet runs the load generator in the controller's Python, which cannot import"
                f" it ({error}): run ansible from the project's virtualenv (pip install -e .), or set"
                " backend: vllm"
            ) from error
        return entry
