# Copyright (c) 2026, rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run a module's main() with arguments, as Ansible would, and return its JSON result."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils import _internal
from ansible.module_utils.testing import patch_module_args


def run_module(main, capsys, args, check_mode=False):
    """The module runs as on a target: its warnings go into its result, even when a test of the same session
    imported controller code (which makes ansible print warnings instead)."""
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    was, _internal.is_controller = _internal.is_controller, False
    try:
        with patch_module_args(args), pytest.raises(SystemExit):
            main()
    finally:
        _internal.is_controller = was
    return json.loads(capsys.readouterr().out)
