# Copyright: rax.carina developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Tests of COE contract loading and shape checks (module_utils/contracts.py), with the real Swarm contract."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from ansible_collections.rax.carina.plugins.module_utils import contracts

COLLECTION = Path(contracts.__file__).resolve().parents[2]
SWARM_CONTRACT = COLLECTION / "roles" / "coe_swarm" / "meta" / "contract.yml"


def _load_swarm():
    with open(SWARM_CONTRACT) as handle:
        return yaml.safe_load(handle.read())


SWARM = _load_swarm()

PORT_PROBLEM = "needs port (int), protocol (tcp/udp), roles (master/worker) and from (clients/cluster)"
LISTENER_PROBLEM = "needs name, port (int), protocol tcp and check.type (tcp/http/https)"


@pytest.fixture
def swarm():
    """A fresh copy of the Swarm contract, free to break in a test."""
    return copy.deepcopy(SWARM)


def write_contract(root, role, content):
    """A contract file at <root>/roles/<role>/meta/contract.yml; `content` is YAML text or data."""
    folder = root / "roles" / role / "meta"
    folder.mkdir(parents=True, exist_ok=True)
    text = content if isinstance(content, str) else yaml.safe_dump(content)
    (folder / "contract.yml").write_text(text)
    return folder / "contract.yml"


# ------------------------------------------------------------------------------------------
# The real contract
# ------------------------------------------------------------------------------------------


def test_the_swarm_contract_has_no_problems():
    assert contracts.problems(SWARM) == []
    assert contracts.problems(SWARM, "swarm") == []


def test_the_swarm_contract_has_every_required_field():
    assert set(contracts.REQUIRED) <= set(SWARM)
    assert SWARM["name"] == "swarm"
    assert isinstance(SWARM["version"], int)
    assert "{endpoint}" in SWARM["api_url"]


def test_collection_root():
    root = contracts.collection_root()
    assert os.path.samefile(root, COLLECTION)
    assert os.path.isdir(os.path.join(root, "roles"))
    assert os.path.isdir(os.path.join(root, "plugins", "module_utils"))


def test_contract_paths_of_the_collection():
    paths = contracts.contract_paths()
    assert "swarm" in paths
    assert os.path.samefile(paths["swarm"], SWARM_CONTRACT)
    for name, path in paths.items():
        assert os.path.basename(os.path.dirname(os.path.dirname(path))) == "coe_" + name


def test_load_the_swarm_contract():
    assert contracts.load(str(SWARM_CONTRACT), yaml.safe_load) == SWARM


def test_load_all_finds_swarm_from_the_collection_root():
    found = contracts.load_all(yaml.safe_load)
    assert found["swarm"] == SWARM
    assert contracts.load_all(yaml.safe_load, contracts.collection_root())["swarm"] == SWARM


# ------------------------------------------------------------------------------------------
# Shape checks
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("contract", [None, [], "swarm", 5, ["name", "swarm"]])
def test_not_a_mapping(contract):
    assert contracts.problems(contract) == ["the contract is not a mapping"]


@pytest.mark.parametrize("field", contracts.REQUIRED)
def test_each_missing_field(swarm, field):
    del swarm[field]
    assert contracts.problems(swarm) == ["missing field %r" % field]


def test_every_missing_field_at_once():
    assert contracts.problems({}) == ["missing field %r" % field for field in contracts.REQUIRED]
    problems = contracts.problems(dict(name="x", version=1))
    assert problems == ["missing field %r" % field for field in contracts.REQUIRED[2:]]


def test_name_differs_from_the_role():
    assert contracts.problems(SWARM, "kubernetes") == ["name 'swarm' differs from its role's name 'kubernetes'"]


@pytest.mark.parametrize("role", ["master", "worker"])
@pytest.mark.parametrize("drop", ["word", "plural"])
def test_role_words(swarm, role, drop):
    del swarm["roles"][role][drop]
    assert contracts.problems(swarm) == ["roles.%s needs word and plural" % role]


def test_role_words_empty_or_missing(swarm):
    swarm["roles"] = {"master": {"word": "", "plural": "managers"}}
    assert contracts.problems(swarm) == ["roles.master needs word and plural", "roles.worker needs word and plural"]


@pytest.mark.parametrize("roles", [None, [], "manager", {"master": "manager", "worker": None}])
def test_roles_of_another_shape(swarm, roles):
    swarm["roles"] = roles
    assert contracts.problems(swarm) == ["roles.master needs word and plural", "roles.worker needs word and plural"]


@pytest.mark.parametrize("key", ["masters", "workers"])
@pytest.mark.parametrize("rule", [None, 3, [1, 3], "odd", {"min": "1"}, {"max": 7.5}, {"default": True}])
def test_count_rules_of_another_shape(swarm, key, rule):
    swarm[key] = rule
    assert contracts.problems(swarm) == ["%s must be a mapping of min, max and default (int)" % key]


def test_count_rules_may_leave_bounds_out(swarm):
    swarm["masters"] = {"odd": True}
    swarm["workers"] = {}
    assert contracts.problems(swarm) == []


BAD_PORTS = [
    {"port": "2376", "protocol": "tcp", "roles": ["master"], "from": "clients"},
    {"port": 2376.0, "protocol": "tcp", "roles": ["master"], "from": "clients"},
    {"port": True, "protocol": "tcp", "roles": ["master"], "from": "clients"},
    {"protocol": "tcp", "roles": ["master"], "from": "clients"},
    {"port": 2376, "protocol": "sctp", "roles": ["master"], "from": "clients"},
    {"port": 2376, "protocol": "TCP", "roles": ["master"], "from": "clients"},
    {"port": 2376, "roles": ["master"], "from": "clients"},
    {"port": 2376, "protocol": "tcp", "roles": ["master"], "from": "anyone"},
    {"port": 2376, "protocol": "tcp", "roles": ["master"]},
    {"port": 2376, "protocol": "tcp", "roles": [], "from": "cluster"},
    {"port": 2376, "protocol": "tcp", "from": "cluster"},
    {"port": 2376, "protocol": "tcp", "roles": ["lb"], "from": "cluster"},
    {"port": 2376, "protocol": "tcp", "roles": ["master", "lb"], "from": "cluster"},
    {"port": 2376, "protocol": "tcp", "roles": "master", "from": "cluster"},
    {"port": 2376, "protocol": "tcp", "roles": [["master"]], "from": "cluster"},
    {"port": 2376, "protocol": "tcp", "roles": [{"master": 1}], "from": "cluster"},
    2376,
    "2376/tcp",
    None,
    ["2376", "tcp"],
]


@pytest.mark.parametrize("port", BAD_PORTS)
def test_bad_port_entry(swarm, port):
    swarm["ports"].append(port)
    index = len(swarm["ports"]) - 1
    assert contracts.problems(swarm) == ["ports[%d] %s" % (index, PORT_PROBLEM)]


def test_bad_port_entries_are_each_named(swarm):
    swarm["ports"][1]["from"] = "world"
    swarm["ports"][3]["protocol"] = "icmp"
    assert contracts.problems(swarm) == ["ports[1] %s" % PORT_PROBLEM, "ports[3] %s" % PORT_PROBLEM]


def test_good_port_entries(swarm):
    swarm["ports"] = [
        {"port": 1, "protocol": "udp", "roles": ["worker"], "from": "clients"},
        {"port": 65535, "protocol": "tcp", "roles": ["master", "worker"], "from": "cluster", "purpose": "x"},
    ]
    assert contracts.problems(swarm) == []


def test_no_ports_and_no_listeners(swarm):
    swarm["ports"] = []
    swarm["listeners"] = []
    assert contracts.problems(swarm) == []


@pytest.mark.parametrize("value", [None, {}, "2376", {"port": 2376}])
def test_ports_not_a_list(swarm, value):
    swarm["ports"] = value
    assert contracts.problems(swarm) == ["ports must be a list"]


BAD_LISTENERS = [
    {"port": 2376, "protocol": "tcp", "check": {"type": "tcp"}},
    {"name": "", "port": 2376, "protocol": "tcp", "check": {"type": "tcp"}},
    {"name": "docker", "port": "2376", "protocol": "tcp", "check": {"type": "tcp"}},
    {"name": "docker", "protocol": "tcp", "check": {"type": "tcp"}},
    {"name": "docker", "port": 2376, "protocol": "udp", "check": {"type": "tcp"}},
    {"name": "docker", "port": 2376, "protocol": "http", "check": {"type": "tcp"}},
    {"name": "docker", "port": 2376, "check": {"type": "tcp"}},
    {"name": "docker", "port": 2376, "protocol": "tcp", "check": {"type": "grpc"}},
    {"name": "docker", "port": 2376, "protocol": "tcp", "check": {}},
    {"name": "docker", "port": 2376, "protocol": "tcp"},
    {"name": "docker", "port": 2376, "protocol": "tcp", "check": "https"},
    {"name": "docker", "port": 2376, "protocol": "tcp", "check": ["https"]},
    "docker",
    2376,
    None,
]


@pytest.mark.parametrize("listener", BAD_LISTENERS)
def test_bad_listener(swarm, listener):
    swarm["listeners"].append(listener)
    index = len(swarm["listeners"]) - 1
    assert contracts.problems(swarm) == ["listeners[%d] %s" % (index, LISTENER_PROBLEM)]


@pytest.mark.parametrize("check_type", ["tcp", "http", "https"])
def test_good_listener_checks(swarm, check_type):
    swarm["listeners"] = [{"name": "api", "port": 6443, "protocol": "tcp", "check": {"type": check_type}}]
    assert contracts.problems(swarm) == []


@pytest.mark.parametrize("value", [None, {}, "docker"])
def test_listeners_not_a_list(swarm, value):
    swarm["listeners"] = value
    assert contracts.problems(swarm) == ["listeners must be a list"]


@pytest.mark.parametrize("api_url", ["tcp://localhost:2376", "", "tcp://{host}:2376", "tcp://{ endpoint }:2376",
                                     None, 2376, ["{endpoint}"]])
def test_api_url_without_endpoint(swarm, api_url):
    swarm["api_url"] = api_url
    assert contracts.problems(swarm) == ["api_url must hold {endpoint}"]


def test_api_url_with_endpoint(swarm):
    swarm["api_url"] = "https://{endpoint}:6443"
    assert contracts.problems(swarm) == []


@pytest.mark.parametrize(("key", "value"), [("basename", ""), ("basename", None), ("env", None), ("env", ["A=1"]),
                                            ("env", "DOCKER_HOST=x"), ("files", []), ("files", None)])
def test_bad_credentials(swarm, key, value):
    swarm["credentials"][key] = value
    assert contracts.problems(swarm) == ["credentials needs basename, env and files"]


@pytest.mark.parametrize("key", ["basename", "env", "files"])
def test_credentials_missing_a_key(swarm, key):
    del swarm["credentials"][key]
    assert contracts.problems(swarm) == ["credentials needs basename, env and files"]


@pytest.mark.parametrize("value", [None, [], "docker"])
def test_credentials_not_a_mapping(swarm, value):
    swarm["credentials"] = value
    assert contracts.problems(swarm) == ["credentials needs basename, env and files"]


@pytest.mark.parametrize("value", [None, "create", {"create": True}])
def test_operations_not_a_list(swarm, value):
    swarm["operations"] = value
    assert contracts.problems(swarm) == ["operations must be a list"]


def test_every_problem_at_once(swarm):
    swarm["roles"]["worker"] = {}
    swarm["ports"][0]["port"] = "x"
    swarm["listeners"][0]["check"]["type"] = "ping"
    swarm["api_url"] = "tcp://nowhere:2376"
    swarm["credentials"]["files"] = []
    assert contracts.problems(swarm, "other") == [
        "name 'swarm' differs from its role's name 'other'",
        "roles.worker needs word and plural",
        "ports[0] %s" % PORT_PROBLEM,
        "listeners[0] %s" % LISTENER_PROBLEM,
        "api_url must hold {endpoint}",
        "credentials needs basename, env and files",
    ]


def test_problems_do_not_change_the_contract(swarm):
    swarm["ports"].append(None)
    before = copy.deepcopy(swarm)
    contracts.problems(swarm, "swarm")
    assert swarm == before


# ------------------------------------------------------------------------------------------
# Finding and loading contracts
# ------------------------------------------------------------------------------------------


def test_contract_paths_of_a_root(tmp_path):
    good = write_contract(tmp_path, "coe_x", "name: x\n")
    write_contract(tmp_path, "lb_haproxy", "name: lb\n")  # not a COE driver
    write_contract(tmp_path, "coe", "name: nothing\n")  # "coe" without "_"
    (tmp_path / "roles" / "coe_empty" / "meta").mkdir(parents=True)  # a COE role without a contract
    (tmp_path / "roles" / "coe_file").write_text("")  # a file, not a role
    assert contracts.contract_paths(str(tmp_path)) == {"x": str(good)}


def test_contract_paths_without_roles(tmp_path):
    assert contracts.contract_paths(str(tmp_path)) == {}
    assert contracts.load_all(yaml.safe_load, str(tmp_path)) == {}


def test_contract_paths_are_sorted(tmp_path):
    for name in ("zeta", "alpha", "mid"):
        write_contract(tmp_path, "coe_" + name, "name: %s\n" % name)
    assert list(contracts.contract_paths(str(tmp_path))) == ["alpha", "mid", "zeta"]


def test_load_all_of_a_root(tmp_path, swarm):
    other = copy.deepcopy(swarm)
    other["name"] = "x"
    write_contract(tmp_path, "coe_swarm", swarm)
    write_contract(tmp_path, "coe_x", other)
    assert contracts.load_all(yaml.safe_load, str(tmp_path)) == {"swarm": swarm, "x": other}


def test_load_all_names_a_broken_contract(tmp_path, swarm):
    del swarm["api_url"]
    swarm["name"] = "x"
    path = write_contract(tmp_path, "coe_x", swarm)
    with pytest.raises(ValueError, match="contract of coe x") as info:
        contracts.load_all(yaml.safe_load, str(tmp_path))
    message = str(info.value)
    assert message == "contract of coe x (%s) is not valid: missing field 'api_url'" % path


def test_load_all_refuses_a_contract_named_after_another_role(tmp_path, swarm):
    write_contract(tmp_path, "coe_x", swarm)
    with pytest.raises(ValueError, match="name 'swarm' differs from its role's name 'x'"):
        contracts.load_all(yaml.safe_load, str(tmp_path))


def test_load_all_refuses_an_empty_contract(tmp_path):
    write_contract(tmp_path, "coe_x", "")
    with pytest.raises(ValueError, match=r"contract of coe x \(.*\) is not valid: the contract is not a mapping"):
        contracts.load_all(yaml.safe_load, str(tmp_path))


@pytest.mark.parametrize(("field", "value"), [("ports", [2376]), ("ports", {"docker": 2376}), ("listeners", ["docker"]),
                                              ("roles", ["master", "worker"]), ("credentials", "docker"),
                                              ("api_url", 2376), ("masters", 3)])
def test_load_all_reports_a_field_of_another_shape(tmp_path, swarm, field, value):
    """A broken contract fails with its problems, not with a traceback from the shape check."""
    swarm[field] = value
    swarm["name"] = "x"
    write_contract(tmp_path, "coe_x", swarm)
    with pytest.raises(ValueError, match="contract of coe x"):
        contracts.load_all(yaml.safe_load, str(tmp_path))


def test_load_all_stops_at_a_broken_contract_among_good_ones(tmp_path, swarm):
    write_contract(tmp_path, "coe_swarm", swarm)
    write_contract(tmp_path, "coe_y", "- not\n- a mapping\n")
    with pytest.raises(ValueError, match="contract of coe y"):
        contracts.load_all(yaml.safe_load, str(tmp_path))


def test_load_all_with_another_loader(tmp_path):
    write_contract(tmp_path, "coe_x", "ignored")
    seen = []

    def loader(text):
        seen.append(text)
        return dict(SWARM, name="x")

    assert contracts.load_all(loader, str(tmp_path)) == {"x": dict(SWARM, name="x")}
    assert seen == ["ignored"]


def test_load_reports_a_missing_file(tmp_path):
    with pytest.raises(OSError):
        contracts.load(str(tmp_path / "nope.yml"), yaml.safe_load)


@pytest.mark.parametrize("options, message", [
    (["pod_cidr"], "options must be a mapping of option name to its rule"),
    ({"pod_cidr": "198.19.0.0/17"}, "options.pod_cidr needs a type (str/int/bool/cidr)"),
    ({"pod_cidr": {"type": "network"}}, "options.pod_cidr needs a type (str/int/bool/cidr)"),
])
def test_bad_options(swarm, options, message):
    swarm["options"] = options
    assert contracts.problems(swarm, "swarm") == [message]


def test_options_are_optional_and_typed(swarm):
    swarm["options"] = {"pod_cidr": {"type": "cidr", "default": "198.19.0.0/17"}, "version": {"default": "1"}}
    assert contracts.problems(swarm, "swarm") == []
