"""Keystone's WSGI application for gunicorn (test cloud).

oslo.config parses ``sys.argv`` when Keystone initialises; under gunicorn that is
gunicorn's own command line, which Keystone rejects and the worker exits. Drop it
before Keystone is imported. The configuration comes from ``OS_KEYSTONE_CONFIG_DIR``
and ``OS_KEYSTONE_CONFIG_FILES`` (set by ``testcloud/cloud.py``).
"""

import sys

sys.argv = sys.argv[:1]

from keystone.wsgi.api import application  # noqa: E402

__all__ = ["application"]
