"""Glance (image v2): images stand for Docker images. Admins register them (POST /v2/images, PATCH
/v2/images/{id}) and give each its data, which is the name of a Docker image: uploaded (PUT
/v2/images/{id}/file, container_format docker) or as the property ``docker_image``. An image without
data stays queued, as in Glance. The test cloud starts with none: `cloud.py up` registers carina's
through the site role (playbooks/prepare_cloud.yml, testcloud/site.yml)."""

from __future__ import annotations

import hashlib
import re

from .core import ApiError, Response, Service, new_id, now_iso

CORE = ("name", "visibility", "disk_format", "container_format", "min_ram", "min_disk", "protected", "tags",
        "os_hidden")
DOCKER_REF = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$")
READ_ONLY = ("id", "status", "owner", "size", "virtual_size", "checksum", "os_hash_algo", "os_hash_value",
             "created_at", "updated_at", "self", "file", "schema")


class Glance(Service):
    name = "glance"

    def __init__(self, store, validator):
        super().__init__(store, validator)
        self.route("GET", "/", self.versions, auth=False)
        self.route("GET", "/versions", self.versions, auth=False)
        self.route("GET", "/v2/images", self.list_images)
        self.route("POST", "/v2/images", self.create_image)
        self.route("GET", "/v2/images/{id}", self.get_image)
        self.route("PATCH", "/v2/images/{id}", self.update_image)
        self.route("PUT", "/v2/images/{id}/file", self.upload_image)
        self.route("DELETE", "/v2/images/{id}", self.delete_image)
        self.route("GET", "/v2/schemas/image", self.schema)

    def error_body(self, err):
        return {"code": err.status, "title": {404: "Not Found", 400: "Bad Request", 403: "Forbidden",
                                               401: "Unauthorized", 409: "Conflict"}.get(err.status, "Error"),
                "message": err.message}

    def images(self) -> dict:
        return self.store.coll("glance", "images")

    @staticmethod
    def image_body(body: dict, owner: str | None) -> dict:
        ts = now_iso()
        image = {"id": body.get("id") or new_id(), "name": body.get("name"), "status": "active",
                 "visibility": body.get("visibility", "public"), "protected": bool(body.get("protected", False)),
                 "os_hidden": bool(body.get("os_hidden", False)), "owner": owner,
                 "disk_format": body.get("disk_format", "raw"),
                 "container_format": body.get("container_format", "docker"),
                 "min_ram": int(body.get("min_ram", 0)), "min_disk": int(body.get("min_disk", 0)),
                 "size": None, "virtual_size": None, "checksum": None, "os_hash_algo": None, "os_hash_value": None,
                 "tags": list(body.get("tags", [])), "created_at": ts, "updated_at": ts}
        for key, value in body.items():  # Glance keeps any other property as a string
            if key not in image:
                image[key] = value
        if not image.get("docker_image"):
            image["status"] = "queued"
        return image

    def view(self, req, image):
        out = dict(image, self="/v2/images/%s" % image["id"], file="/v2/images/%s/file" % image["id"],
                   schema="/v2/schemas/image")
        return out

    def visible(self, req, image) -> bool:
        return (image["visibility"] in ("public", "community") or req.ctx.is_admin
                or image.get("owner") == req.ctx.project_id)

    def find(self, req, image_id: str) -> dict:
        image = self.images().get(image_id)
        if image is None or not self.visible(req, image):
            raise ApiError(404, "No image found with ID %s" % image_id)
        return image

    def versions(self, req):
        return Response(200, {"versions": [
            {"id": "v2.%d" % minor, "status": "CURRENT" if minor == 16 else "SUPPORTED",
             "links": [{"rel": "self", "href": req.base_url + "/v2/"}]} for minor in (16, 15, 9, 0)]})

    def list_images(self, req):
        with self.store.lock:
            found = [i for i in self.images().values() if self.visible(req, i)]
        for key in ("name", "visibility", "status", "owner", "id", "container_format", "disk_format"):
            want = req.arg(key)
            if want is not None:
                wanted = want[3:].split(",") if want.startswith("in:") else [want]
                found = [i for i in found if str(i.get(key)) in wanted]
        if req.arg("os_hidden", "false").lower() != "true":
            found = [i for i in found if not i.get("os_hidden")]
        found.sort(key=lambda i: i["created_at"], reverse=True)
        return Response(200, {"images": [self.view(req, i) for i in found], "first": "/v2/images",
                              "schema": "/v2/schemas/images"})

    def get_image(self, req):
        with self.store.lock:
            return Response(200, self.view(req, self.find(req, req.params["id"])))

    def create_image(self, req):
        if not req.ctx.is_admin:
            raise ApiError(403, "You are not authorized to register images in the test cloud")
        body = req.body or {}
        with self.store.lock:
            if body.get("id") in self.images():
                raise ApiError(409, "Image with identifier %s already exists!" % body["id"])
            image = self.image_body(body, owner=req.ctx.project_id)
            self.images()[image["id"]] = image
            self.store.save()
        return Response(201, self.view(req, image))

    def update_image(self, req):
        """A JSON patch (application/openstack-images-v2.1-json-patch): add, replace or remove a property."""
        if not req.ctx.is_admin:
            raise ApiError(403, "You are not authorized to change images in the test cloud")
        ops = req.body if isinstance(req.body, list) else None
        if ops is None or not all(isinstance(op, dict) for op in ops):
            raise ApiError(400, "The request body must be a JSON patch (a list of operations)")
        with self.store.lock:
            image = dict(self.find(req, req.params["id"]))
            for op in ops:
                key = str(op.get("path", "")).lstrip("/")
                if op.get("op") not in ("add", "replace", "remove") or not key or "/" in key:
                    raise ApiError(400, "Unsupported patch operation %r" % op)
                if key in READ_ONLY:
                    raise ApiError(403, "Attribute '%s' is read-only." % key)
                if op["op"] == "remove":
                    if key in CORE or key not in image:
                        raise ApiError(409, "Property %s does not exist or cannot be removed." % key)
                    image.pop(key)
                elif op["op"] == "replace" and key not in image:
                    raise ApiError(409, "Property %s does not exist." % key)
                else:
                    image[key] = op.get("value")
            if image.get("docker_image") and image["status"] == "queued":
                image["status"] = "active"
            image["updated_at"] = now_iso()
            self.images()[image["id"]] = image
            self.store.save()
        return Response(200, self.view(req, image))

    def upload_image(self, req):
        """The image's data: the name of a Docker image (the file carina's site role uploads)."""
        data = req.raw
        with self.store.lock:
            image = self.find(req, req.params["id"])
            if not req.ctx.is_admin and image.get("owner") != req.ctx.project_id:
                raise ApiError(403, "You cannot upload data to image %s" % image["id"])
            if image["status"] != "queued":
                raise ApiError(409, "Image status transition from %s to saving is not allowed" % image["status"])
            reference = data.decode("utf-8", "replace").strip()
            if image.get("container_format") != "docker" or not DOCKER_REF.match(reference):
                raise ApiError(400, "The test cloud boots Docker images only: upload, with container_format docker, "
                                    "a file that holds a Docker image's name (%d bytes given)" % len(data))
            image.update(docker_image=reference, status="active", size=len(data), virtual_size=len(data),
                         checksum=hashlib.md5(data, usedforsecurity=False).hexdigest(), os_hash_algo="sha512",
                         os_hash_value=hashlib.sha512(data).hexdigest(), updated_at=now_iso())
            self.store.save()
        return Response(204)

    def delete_image(self, req):
        with self.store.lock:
            image = self.find(req, req.params["id"])
            if not req.ctx.is_admin and image.get("owner") != req.ctx.project_id:
                raise ApiError(403, "You cannot delete image %s" % image["id"])
            if image.get("protected"):
                raise ApiError(403, "Image %s is protected and cannot be deleted." % image["id"])
            self.images().pop(image["id"])
            self.store.save()
        return Response(204)

    def schema(self, req):
        return Response(200, {"name": "image", "properties": {k: {} for k in CORE}, "additionalProperties": {
            "type": "string"}})
