# Copyright: npufleet contributors
# Apache License 2.0
"""Ansible's linear strategy run through Mitogen for Ansible (PyPI ``mitogen``), which keeps one Python
interpreter per node for the whole run instead of starting one per task.

This file only makes Mitogen's own strategy loadable by name from the project's ansible.cfg
(``strategy = mitogen_linear``, ``npufleet up --mitogen``) without a path into the virtualenv.
Mitogen redirects the connections it knows by their short names (``ssh``, ``docker``, ``local``);
other connections, FQCN names included, run as without it."""

from __future__ import annotations

DOCUMENTATION = r"""
name: mitogen_linear
short_description: Ansible's linear strategy through Mitogen for Ansible
description:
  - The linear strategy with Mitogen's connection multiplexing. Needs the C(mitogen) Python package
    on the controller (installed with npufleet).
  - Mitogen takes over the connections named C(ssh), C(docker) and C(local); use those names, not
    their FQCNs, for the nodes that should go through it.
author:
  - npufleet contributors
"""

try:
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
except ImportError as error:
    from ansible.errors import AnsibleError

    raise AnsibleError(
        f"strategy mitogen_linear needs Mitogen for Ansible ({error}): pip install mitogen, "
        "or remove 'strategy = mitogen_linear' (or --mitogen) to run with Ansible's own strategy"
    ) from error

_LINEAR = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _LINEAR):
    """Mitogen's mixin over Ansible's linear strategy."""
