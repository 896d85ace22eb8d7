"""Octavia's API as a WSGI application for gunicorn (test cloud).

``octavia.wsgi.api`` reads its options from ``sys.argv`` (gunicorn's command line under
gunicorn); build the application with an explicit argument list instead. The
configuration file is ``TESTCLOUD_OCTAVIA_CONF``; the no-op drivers' shared sqlite file
is ``TESTCLOUD_OCTAVIA_NOOP_DB``. Ports given as ``vip_port_id`` are looked up in
Neutron, and requests that write take turns with the sweeper's writes (see octavia_local.py).
"""

import os

from octavia_local import SerializedWrites, keep_noop_state_in, ports_from_neutron

keep_noop_state_in(os.environ["TESTCLOUD_OCTAVIA_NOOP_DB"])
ports_from_neutron()

from octavia.api import app as _octavia_app  # noqa: E402

application = SerializedWrites(
    _octavia_app.setup_app(argv=["octavia-api", "--config-file", os.environ["TESTCLOUD_OCTAVIA_CONF"]]),
    os.environ["TESTCLOUD_OCTAVIA_DB_LOCK"],
)
