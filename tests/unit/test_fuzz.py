"""The service's API fuzzed from its own OpenAPI document (schemathesis): whatever a client sends, the answer is
never a server error, has a status the document names, and a body of the documented type. Runs in process on the
WSGI application, with runs not started (nothing is built)."""

from __future__ import annotations

import io

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402 - after the skip
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from carina import api  # noqa: E402
from carina.service.app import App  # noqa: E402
from carina.service.server import Config  # noqa: E402

EXAMPLES = 40  # per operation: about 20 operations, a few seconds in all


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    home = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CARINA_HOME", str(home))
        patch.setattr(api.Client, "_spawn", lambda self, run: None)
        service = App(Config.load(None, home=str(home)))
        # Something to find: a template and a cluster using it (its run never starts).
        for method, path, body in (
                ("POST", "/v1/clustertemplates", b'{"name": "sw", "coe": "swarm-mode", "image_id": "carina-host"}'),
                ("POST", "/v1/clusters", b'{"name": "c1", "cluster_template_id": "sw", "node_count": 1}')):
            statuses = []
            service({"REQUEST_METHOD": method, "PATH_INFO": path, "CONTENT_LENGTH": str(len(body)),
                     "CONTENT_TYPE": "application/json",
                     "wsgi.input": io.BytesIO(body), "HTTP_HOST": "127.0.0.1:9511"},
                    lambda status, headers, seen=statuses: seen.append(status))
            assert statuses[0].startswith(("201", "202")), statuses
        yield service


def test_no_request_gets_a_server_error_or_an_undocumented_answer(app):
    answered = []

    def counted(environ, start_response):
        def start(status, headers, *rest):
            answered.append((environ["REQUEST_METHOD"], int(status.split()[0])))
            return start_response(status, headers, *rest)
        return app(environ, start)

    schema = schemathesis.openapi.from_wsgi("/openapi.json", counted)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
        def fuzz(case):
            case.call_and_validate(checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                         response_schema_conformance])

        fuzz()
    # The fuzzing reached the service: many requests, some accepted and some refused.
    statuses = {status for _method, status in answered}
    assert len(answered) > 10 * len(operations), len(answered)
    assert {200, 400, 404} <= statuses and not any(status >= 500 for status in statuses), sorted(statuses)
