"""Create Octavia's database on sqlite (test cloud).

``octavia-db-manage upgrade`` fails on sqlite (its migrations alter constraints), so the
tables come from Octavia's own SQLAlchemy models, and the rows the migrations would have
inserted (lookup tables, DELETED placeholders) are added here.

Usage: python octavia_schema.py <sqlite file>
"""

from __future__ import annotations

import sqlite3
import sys

import sqlalchemy
from octavia.common import constants
from octavia.db import base_models, models
from sqlalchemy.orm import Session

# Lookup table -> the names Octavia accepts in it.
LOOKUPS: dict[str, tuple[str, ...]] = {
    "provisioning_status": tuple(constants.SUPPORTED_PROVISIONING_STATUSES),
    "operating_status": tuple(constants.SUPPORTED_OPERATING_STATUSES),
    "protocol": tuple(constants.SUPPORTED_PROTOCOLS),
    "algorithm": tuple(constants.SUPPORTED_LB_ALGORITHMS),
    "amphora_roles": tuple(constants.SUPPORTED_AMPHORA_ROLES),
    "lb_topology": tuple(constants.SUPPORTED_LB_TOPOLOGIES),
    "session_persistence_type": tuple(constants.SUPPORTED_SP_TYPES),
    "health_monitor_type": tuple(constants.SUPPORTED_HEALTH_MONITOR_TYPES),
    "vrrp_auth_method": tuple(constants.SUPPORTED_VRRP_AUTH),
    "l7rule_type": tuple(constants.SUPPORTED_L7RULE_TYPES),
    "l7rule_compare_type": tuple(constants.SUPPORTED_L7RULE_COMPARE_TYPES),
    "l7policy_action": tuple(constants.SUPPORTED_L7POLICY_ACTIONS),
    "client_authentication_mode": tuple(constants.SUPPORTED_CLIENT_AUTH_MODES),
}

PLACEHOLDER = "DELETED-PLACEHOLDER"


def create(path: str) -> None:
    # WAL lets the API and the status sweeper read while the other one writes.
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA journal_mode=WAL")
    engine = sqlalchemy.create_engine("sqlite:///" + path)
    base_models.BASE.metadata.create_all(engine)
    tables = base_models.BASE.metadata.tables
    missing = set(LOOKUPS) - set(tables)
    if missing:
        raise SystemExit(f"octavia_schema: Octavia's models lack the lookup tables {sorted(missing)}")
    with engine.begin() as conn:
        for table, names in LOOKUPS.items():
            conn.execute(tables[table].insert(), [{"name": name} for name in dict.fromkeys(names)])
    # Rows that deleted flavors / availability zones point at, as the migrations create them.
    with Session(engine) as session, session.begin():
        session.add(
            models.FlavorProfile(
                id=constants.NIL_UUID, name=PLACEHOLDER, provider_name=constants.DELETED, flavor_data="{}"
            )
        )
        session.flush()
        session.add(
            models.Flavor(
                id=constants.NIL_UUID,
                flavor_profile_id=constants.NIL_UUID,
                name=PLACEHOLDER,
                enabled=False,
                description="Placeholder for DELETED LBs with DELETED flavors",
            )
        )
        session.add(
            models.AvailabilityZoneProfile(
                id=constants.NIL_UUID,
                name=PLACEHOLDER,
                provider_name=constants.DELETED,
                availability_zone_data="{}",
            )
        )
        session.flush()
        session.add(
            models.AvailabilityZone(
                name=constants.NIL_UUID,
                availability_zone_profile_id=constants.NIL_UUID,
                enabled=False,
                description="Placeholder for DELETED LBs with DELETED availability zones",
            )
        )
    engine.dispose()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    create(sys.argv[1])
