"""Barbican's API as a WSGI application for gunicorn (test cloud).

``barbican.wsgi.api`` reads ``/etc/barbican``, and barbican.common.config and every plugin module
parse their own options from the default places when imported (``config.parse_args``). Make
``TESTCLOUD_BARBICAN_CONF`` the default configuration file of every such parse (the one done at
import is done again), then build the application from the paste file the package installs
(``TESTCLOUD_BARBICAN_PASTE``): the keystone pipeline on ``/v1``, versions on ``/``.
"""

import os
import sys

sys.argv = sys.argv[:1]

from barbican.common import config  # noqa: E402

_CONF_FILES = [os.environ["TESTCLOUD_BARBICAN_CONF"]]
_parse_args = config.parse_args


def _parse_from_our_file(conf, args=None, usage=None, default_config_files=None):
    _parse_args(conf, args=args, usage=usage, default_config_files=default_config_files or _CONF_FILES)


config.parse_args = _parse_from_our_file
config.parse_args(config.CONF)

from paste import deploy  # noqa: E402

application = deploy.loadapp("config:" + os.environ["TESTCLOUD_BARBICAN_PASTE"])

__all__ = ["application"]
