# Copyright: npufleet contributors
# Apache License 2.0
"""The action of npufleet.ascend.llm_benchmark: backend npufleet runs the load generator here, on the
controller (plugin_utils/bench, the entry point the CLI calls too); backend vllm hands the task to the
module on the node, which runs `vllm bench serve` in the serving container."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.npufleet.ascend.plugins.modules.llm_benchmark import SPEC, task_result

MODULE = "npufleet.ascend.llm_benchmark"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    # A benchmark sends load: it does not run in check mode (the task is skipped, as the module's is).
    _supports_check_mode = False
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _, params = self.validate_argument_spec(**SPEC)
        if params["backend"] == "vllm":
            # The task's own arguments, not the validated ones: those carry every default, and the
            # module would count concurrency and rate as both given.
            result.update(self._execute_module(module_name=MODULE, module_args=dict(self._task.args),
                                               task_vars=task_vars))  # fmt: skip
            return result
        try:
            from ansible_collections.npufleet.ascend.plugins.plugin_utils.bench.entry import (  # noqa: PLC0415
                run_benchmark,  # the load generator's aiohttp and matplotlib load for this backend only
            )
        except ImportError as error:
            raise AnsibleActionFail(
                f"backend npufleet runs the load generator in the controller's Python, which cannot import"
                f" it ({error}): run ansible from the project's virtualenv (pip install -e .), or set"
                " backend: vllm"
            ) from error
        try:
            outcome = run_benchmark(dict(self._task.args))
        except ValueError as error:
            raise AnsibleActionFail(str(error)) from error
        result.update(task_result(outcome, params["url"]))
        return result
