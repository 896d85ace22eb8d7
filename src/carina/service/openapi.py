"""The OpenAPI 3.1 document of the service's Magnum API (served at /openapi.json)."""

from __future__ import annotations

from carina.service.magnum import BRIEF, MAX_LIMIT, TEMPLATE_FIELDS, TEMPLATE_TYPES

JSON = "application/json"
NULLABLE_TEXT = {"type": ["string", "null"]}
TYPES = {int: {"type": ["integer", "null"]}, bool: {"type": "boolean"},
         dict: {"type": "object", "additionalProperties": {"type": "string"}}}
LINKS = {"type": "array", "items": {"type": "object", "properties": {"href": {"type": "string"},
                                                                      "rel": {"type": "string"}}}}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def body(schema: dict, description: str) -> dict:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def errors(*codes: int) -> dict:
    return {str(code): {"$ref": "#/components/responses/Error"} for code in codes}


def schemas() -> dict:
    template = {key: TYPES.get(TEMPLATE_TYPES.get(key, str), NULLABLE_TEXT) for key in TEMPLATE_FIELDS}
    template["coe"] = {"type": "string", "description": "swarm-mode, swarm or kubernetes"}
    template["server_type"] = {"type": ["string", "null"], "enum": ["vm", "bm", None]}
    template_view = dict(template, uuid={"type": "string", "format": "uuid"}, links=LINKS,
                         project_id=NULLABLE_TEXT, user_id=NULLABLE_TEXT, created_at=NULLABLE_TEXT,
                         updated_at=NULLABLE_TEXT)
    status = {"type": "string", "enum": ["CREATE_IN_PROGRESS", "CREATE_FAILED", "CREATE_COMPLETE",
                                         "UPDATE_IN_PROGRESS", "UPDATE_FAILED", "UPDATE_COMPLETE",
                                         "DELETE_IN_PROGRESS", "DELETE_FAILED", "DELETE_COMPLETE"]}
    health = {"type": ["string", "null"], "enum": ["HEALTHY", "UNHEALTHY", "UNKNOWN", None]}
    count = {"type": "integer", "minimum": 0}
    cluster = {key: NULLABLE_TEXT for key in BRIEF} | {
        "uuid": {"type": "string", "format": "uuid"}, "name": {"type": "string"}, "status": status,
        "health_status": health, "node_count": count, "master_count": count, "links": LINKS,
        "labels": TYPES[dict], "docker_volume_size": TYPES[int], "create_timeout": {"type": "integer"},
        "api_address": NULLABLE_TEXT, "status_reason": NULLABLE_TEXT, "coe_version": NULLABLE_TEXT,
        "master_addresses": {"type": "array", "items": {"type": "string"}},
        "node_addresses": {"type": "array", "items": {"type": "string"}},
        "health_status_reason": TYPES[dict], "faults": TYPES[dict], "project_id": NULLABLE_TEXT,
        "cluster_id": NULLABLE_TEXT, "stack_id": NULLABLE_TEXT}
    create = {
        "type": "object", "required": ["cluster_template_id"],
        "properties": {"name": {"type": ["string", "null"]}, "cluster_template_id": {"type": "string"},
                       "master_count": {"type": ["integer", "null"]}, "node_count": {"type": ["integer", "null"]},
                       "create_timeout": {"type": ["integer", "null"]}, "discovery_url": NULLABLE_TEXT,
                       "keypair": NULLABLE_TEXT, "labels": {"type": ["object", "null"]},
                       "docker_volume_size": {"type": ["integer", "null"]}, "master_flavor_id": NULLABLE_TEXT,
                       "flavor_id": NULLABLE_TEXT, "fixed_network": NULLABLE_TEXT, "fixed_subnet": NULLABLE_TEXT,
                       "floating_ip_enabled": {"type": ["boolean", "null"]},
                       "master_lb_enabled": {"type": ["boolean", "null"]}, "merge_labels": {"type": "boolean"}},
        "additionalProperties": False}
    patch = {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["op", "path"],
        "properties": {"op": {"enum": ["add", "replace", "remove"]}, "path": {"type": "string"}, "value": {}}}}
    error = {"type": "object", "properties": {
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "request_id": {"type": "string"}, "code": {"type": "string"}, "status": {"type": "integer"},
            "title": {"type": "string"}, "detail": {"type": "string"}, "links": LINKS}}},
        "message": {"type": "string"}}}
    return {
        "ClusterTemplateInput": {"type": "object", "required": ["coe", "image_id"], "properties": template},
        "ClusterTemplate": {"type": "object", "properties": template_view},
        "ClusterTemplateList": {"type": "object", "properties": {"clustertemplates": {
            "type": "array", "items": ref("ClusterTemplate")}, "next": {"type": "string"}}},
        "Cluster": {"type": "object", "properties": cluster},
        "ClusterList": {"type": "object", "properties": {"clusters": {"type": "array", "items": ref("Cluster")},
                                                         "next": {"type": "string"}}},
        "ClusterCreate": create,
        "Resize": {"type": "object", "required": ["node_count"], "properties": {
            "node_count": count, "nodes_to_remove": {"type": ["array", "null"], "items": {"type": "string"}},
            "nodegroup": NULLABLE_TEXT}},
        "Patch": patch,
        "Accepted": {"type": "object", "required": ["uuid"], "properties": {"uuid": {"type": "string"}}},
        "Certificate": {"type": "object", "properties": {"cluster_uuid": {"type": "string"}, "pem": {"type": "string"},
                                                         "csr": NULLABLE_TEXT, "links": LINKS}},
        "CertificateRequest": {"type": "object", "required": ["cluster_uuid", "csr"],
                               "properties": {"cluster_uuid": {"type": "string"}, "csr": {"type": "string"}}},
        "Error": error,
    }


def panel_schemas() -> dict:
    text = {"type": "string"}
    return {
        "Problems": {"type": "object", "required": ["message", "problems"],
                     "properties": {"message": text, "problems": {"type": "array", "items": text}}},
        "Login": {"type": "object", "required": ["username", "password", "project"],
                  "properties": {"username": text, "password": text, "project": text, "domain": text}},
        "PanelCreate": {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
            "name": text, "coe": text, "masters": {"type": "integer"}, "nodes": {"type": "integer"},
            "options": {"type": "object"}, "openstack": {"type": "object"}}},
        "Card": {"type": "object", "properties": {
            "uuid": {"type": ["string", "null"]}, "name": text, "carina_name": text, "coe": text, "type": text,
            "masters": {"type": "integer"}, "nodes": {"type": "integer"}, "segments": {"type": "integer"},
            "autoscale": {"type": "boolean"}, "status": text, "status_reason": text,
            "health_status": NULLABLE_TEXT, "provider": text, "api_address": NULLABLE_TEXT,
            "project_id": NULLABLE_TEXT, "bundle": {"type": "boolean"}}},
    }


def panel_paths(ident: list) -> dict:
    """The control panel's JSON API (under /panel/api; the page itself is /panel/)."""
    problems = {"description": "refused", "content": {JSON: {"schema": ref("Problems")}}}
    refused = {str(code): problems for code in (400, 401, 403, 404, 409, 421, 503)}
    card_list = {"type": "object", "properties": {"clusters": {"type": "array", "items": ref("Card")}}}
    return {
        "/panel/api/session": {"get": {"summary": "Whether the panel needs a login", "security": [],
                                       "responses": {"200": body({"type": "object"}, "the session's rules")}}},
        "/panel/api/login": {"post": {
            "summary": "A project token for a Keystone user (only with [keystone])", "security": [],
            "requestBody": {"required": True, "content": {JSON: {"schema": ref("Login")}}},
            "responses": {"200": body({"type": "object"}, "the token")} | refused | {"503": problems}}},
        "/panel/api/form": {"get": {"summary": "The create form's choices, from the COE contracts",
                                    "responses": {"200": body({"type": "object"}, "COEs, bounds, options")}
                                    | refused}},
        "/panel/api/clusters": {
            "get": {"summary": "The project's clusters as cards",
                    "responses": {"200": body(card_list, "the cards")} | refused},
            "post": {"summary": "Create a cluster from the form (asynchronous)",
                     "requestBody": {"required": True, "content": {JSON: {"schema": ref("PanelCreate")}}},
                     "responses": {"202": body(ref("Card"), "accepted")} | refused}},
        "/panel/api/clusters/{ident}": {
            "parameters": ident,
            "delete": {"summary": "Delete a cluster (asynchronous)",
                       "responses": {"204": {"description": "accepted"}} | refused}},
        "/panel/api/clusters/{ident}/bundle": {
            "parameters": ident,
            "get": {"summary": "Get Access: the credentials bundle as a zip",
                    "responses": {"200": {"description": "the zip",
                                          "content": {"application/zip": {"schema": {"type": "string",
                                                                                     "format": "binary"}}}}}
                    | refused}},
    }


def document(server_url: str) -> dict:
    ident = [{"name": "ident", "in": "path", "required": True, "schema": {"type": "string"},
              "description": "uuid or name"}]
    paging = [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}},
              {"name": "marker", "in": "query", "schema": {"type": "string"}},
              {"name": "sort_key", "in": "query", "schema": {"type": "string"}},
              {"name": "sort_dir", "in": "query", "schema": {"enum": ["asc", "desc"]}}]
    version = {"name": "OpenStack-API-Version", "in": "header", "schema": {"type": "string"},
               "description": "container-infra X.Y (1.1 to 1.14) or latest; 1.1 when left out"}
    ok = {"200": body({"type": "object"}, "OK")}
    paths = {
        "/": {"get": {"summary": "API versions", "security": [], "responses": ok}},
        "/v1": {"get": {"summary": "The v1 API's resources", "security": [], "responses": ok}},
        "/v1/clustertemplates": {
            "get": {"summary": "List cluster templates", "parameters": paging,
                    "responses": {"200": body(ref("ClusterTemplateList"), "templates")} | errors(400, 401, 404)},
            "post": {"summary": "Create a cluster template",
                     "requestBody": {"required": True, "content": {JSON: {"schema": ref("ClusterTemplateInput")}}},
                     "responses": {"201": body(ref("ClusterTemplate"), "made")} | errors(400, 401, 403)}},
        "/v1/clustertemplates/detail": {"get": {
            "summary": "List cluster templates", "parameters": paging,
            "responses": {"200": body(ref("ClusterTemplateList"), "templates")} | errors(400, 401, 404)}},
        "/v1/clustertemplates/{ident}": {
            "parameters": ident,
            "get": {"summary": "Show a cluster template",
                    "responses": {"200": body(ref("ClusterTemplate"), "the template")} | errors(401, 404, 409)},
            "patch": {"summary": "Update a cluster template (JSON patch)",
                      "requestBody": {"required": True, "content": {JSON: {"schema": ref("Patch")}}},
                      "responses": {"200": body(ref("ClusterTemplate"), "updated")} | errors(400, 401, 403, 404)},
            "delete": {"summary": "Delete a cluster template (refused while clusters use it)",
                       "responses": {"204": {"description": "deleted"}} | errors(400, 401, 403, 404)}},
        "/v1/clusters": {
            "get": {"summary": "List clusters (brief)", "parameters": paging,
                    "responses": {"200": body(ref("ClusterList"), "clusters")} | errors(400, 401, 404)},
            "post": {"summary": "Create a cluster (asynchronous)",
                     "requestBody": {"required": True, "content": {JSON: {"schema": ref("ClusterCreate")}}},
                     "responses": {"202": body(ref("Accepted"), "accepted")} | errors(400, 401, 404, 409)}},
        "/v1/clusters/detail": {"get": {
            "summary": "List clusters (every field)", "parameters": paging,
            "responses": {"200": body(ref("ClusterList"), "clusters")} | errors(400, 401, 404)}},
        "/v1/clusters/{ident}": {
            "parameters": ident,
            "get": {"summary": "Show a cluster",
                    "responses": {"200": body(ref("Cluster"), "the cluster")} | errors(401, 404)},
            "patch": {"summary": "Change node_count (JSON patch); a scale run",
                      "requestBody": {"required": True, "content": {JSON: {"schema": ref("Patch")}}},
                      "responses": {"202": body(ref("Accepted"), "accepted")} | errors(400, 401, 404, 409)},
            "delete": {"summary": "Delete a cluster (asynchronous)",
                       "responses": {"204": {"description": "accepted"}} | errors(401, 404, 409)}},
        "/v1/clusters/{ident}/actions/resize": {
            "parameters": ident,
            "post": {"summary": "Resize the workers (microversion 1.7 or later)",
                     "requestBody": {"required": True, "content": {JSON: {"schema": ref("Resize")}}},
                     "responses": {"202": body(ref("Accepted"), "accepted")} | errors(400, 401, 404, 406, 409)}},
        "/v1/certificates": {"post": {
            "summary": "Sign a client CSR with the cluster CA",
            "requestBody": {"required": True, "content": {JSON: {"schema": ref("CertificateRequest")}}},
            "responses": {"201": body(ref("Certificate"), "signed")} | errors(400, 401)}},
        "/v1/certificates/{ident}": {
            "parameters": ident,
            "get": {"summary": "The cluster CA", "responses": {"200": body(ref("Certificate"), "the CA")}
                    | errors(400, 401, 404)}},
    }
    for path, item in paths.items():
        for method, operation in item.items():
            if method != "parameters":
                operation.setdefault("parameters", []).append(version)
                if path.startswith("/v1"):  # a version outside 1.1 to 1.14, or not one
                    operation["responses"] |= errors(406)
    paths |= panel_paths(ident)
    for item in paths.values():  # what the service refuses before any route (see App.refuse_cross_site)
        for method, operation in item.items():
            if method == "parameters":
                continue
            refused = errors(403, 421, *([415] if "requestBody" in operation else []))
            operation["responses"] = refused | operation["responses"]
    return {
        "openapi": "3.1.0",
        "info": {"title": "carina: Magnum's container-infra API", "version": "1.14",
                 "description": "Magnum's v1 API as carina serves it; errors as Magnum's error bodies."},
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": schemas() | panel_schemas(),
            "responses": {"Error": body(ref("Error"), "an error; the message is errors[0].title")},
            "securitySchemes": {"keystone": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}}},
        "security": [{"keystone": []}, {}],
    }
