"""Run the emulated Nova, Neutron and Glance in one process:

    python -m testcloud.emulator --state-dir .cache/testcloud --keystone http://127.0.0.1:5000/v3
    python -m testcloud.emulator purge      # remove every Docker object of its instance (--instance)

See testcloud/emulator/README.md."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from testcloud.agent.dataplane import DEFAULT_INSTANCE, DockerPlane

from .core import Server, Store, TokenValidator, make_handler
from .glance import Glance
from .neutron import Neutron
from .nova import Nova

LOG = logging.getLogger("testcloud.emulator")


def build(args):
    """The three services over one store (no sockets yet)."""
    store = Store(Path(args.state_dir) / "emulator.json")
    validator = TokenValidator(args.keystone)
    plane = DockerPlane(args.docker_host, args.instance) if args.dataplane == "docker" else None
    neutron = Neutron(store, validator)
    glance = Glance(store, validator)
    nova = Nova(store, validator, neutron, glance, plane=plane, build_hold=args.build_hold,
                boot_timeout=args.boot_timeout)
    if plane is not None:
        neutron.on_network_delete = plane.remove_network
        neutron.taken_elsewhere = plane.used_addresses
    return store, nova, neutron, glance


def listen(host: str, port: int, service, wait: float) -> Server:
    """Bind, waiting up to ``wait`` seconds while something else still holds the port."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return Server((host, port), make_handler(service))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            LOG.warning("%s: port %d is in use; retrying", service.name, port)
            time.sleep(1)


def serve(args) -> int:
    _store, nova, neutron, glance = build(args)
    # Bind all three ports before serving any: a client that sees Nova can rely on Neutron and Glance.
    servers = [(service, listen(args.bind, port, service, args.bind_wait)) for service, port in (
        (nova, args.nova_port), (neutron, args.neutron_port), (glance, args.glance_port))]
    for service, httpd in servers:
        threading.Thread(target=httpd.serve_forever, name=service.name, daemon=True).start()
        LOG.info("%s listening on http://%s:%d", service.name, *httpd.server_address[:2])
    nova.resume()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    for _service, httpd in servers:
        httpd.shutdown()
        httpd.server_close()
    LOG.info("stopped")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testcloud.emulator", description=__doc__.splitlines()[0])
    parser.add_argument("action", nargs="?", choices=["serve", "purge"], default="serve",
                        help="serve (default) or purge: remove every container/volume/network of the instance "
                             "(labelled carina.testcloud=1 and carina.testcloud.instance=INSTANCE)")
    parser.add_argument("--state-dir", default=".cache/testcloud", help="where emulator.json is kept")
    parser.add_argument("--keystone", default=os.environ.get("TESTCLOUD_KEYSTONE", "http://127.0.0.1:5000/v3"),
                        help="Keystone v3 URL that validates tokens")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--nova-port", type=int, default=8774)
    parser.add_argument("--neutron-port", type=int, default=9696)
    parser.add_argument("--glance-port", type=int, default=9292)
    parser.add_argument("--dataplane", choices=["docker", "none"], default="docker",
                        help="none: servers go ACTIVE without containers (API-only tests)")
    parser.add_argument("--docker-host", default=None, help="default: $DOCKER_HOST")
    parser.add_argument("--instance", default=DEFAULT_INSTANCE,
                        help="the test cloud whose Docker objects these are (label carina.testcloud.instance; "
                             "default %(default)s: cloud.py's)")
    parser.add_argument("--build-hold", type=float, default=15,
                        help="seconds a GET of a BUILD server waits for it to leave BUILD (0: answer at once)")
    parser.add_argument("--bind-wait", type=float, default=30, help="seconds to wait for a busy port")
    parser.add_argument("--boot-timeout", type=float, default=180, help="seconds for sshd to answer in a new server")
    parser.add_argument("--log-level", default=os.environ.get("TESTCLOUD_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.action == "purge":
        for name in DockerPlane(args.docker_host, args.instance).purge():
            print("removed", name)
        return 0
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
