"""Run the test cloud agent (the data plane of Ironic and Octavia):

    python -m testcloud.agent --state-dir .cache/testcloud --cloud devstack-admin

It reads the clouds.yaml of the state dir (or $OS_CLIENT_CONFIG_FILE) and polls every second.
See testcloud/emulator/README.md ("Agent")."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import openstack

from .agent import Agent
from .dataplane import DEFAULT_INSTANCE, DockerPlane

LOG = logging.getLogger("testcloud.agent")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testcloud.agent", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", default=".cache/testcloud", type=Path)
    parser.add_argument("--cloud", default="devstack-admin", help="an admin cloud of the clouds.yaml")
    parser.add_argument("--clouds-yaml", type=Path, help="default: $OS_CLIENT_CONFIG_FILE, else STATE_DIR/clouds.yaml")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between passes")
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    parser.add_argument("--docker-host", default=None, help="default: $DOCKER_HOST")
    parser.add_argument("--instance", default=DEFAULT_INSTANCE,
                        help="the test cloud whose containers it manages (label carina.testcloud.instance; "
                             "default %(default)s: cloud.py's)")
    parser.add_argument("--log-level", default=os.environ.get("TESTCLOUD_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("openstack.config").setLevel(logging.ERROR)  # "catalog entry not found" each pass
    clouds = args.clouds_yaml or (None if os.environ.get("OS_CLIENT_CONFIG_FILE") else args.state_dir / "clouds.yaml")
    if clouds:
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(clouds)
    conn = openstack.connect(cloud=args.cloud)
    agent = Agent(conn, DockerPlane(args.docker_host, args.instance), args.state_dir)
    if args.once:
        agent.tick()
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    LOG.info("agent polling %s every %.1fs", args.cloud, args.interval)
    agent.run(stop, args.interval)
    LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
