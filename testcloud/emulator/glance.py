"""Glance (image v2), read-mostly: images stand for Docker images (property ``docker_image``).
Admins may register more with POST /v2/images (no upload: give ``docker_image``) and delete them."""

from __future__ import annotations

from .core import ApiError, Response, Service, new_id, now_iso, seed_id

SEED_IMAGES = {
    # name: (docker image, min_ram, min_disk)
    "carina-host": "carina-host:bookworm-engine",
    "carina-lb": "carina-host:bookworm-lb",
    "carina-host-kube": "carina-host:bookworm-kube",
    # Not on any engine: a server from it goes ERROR with the engine's message, for failure tests.
    "carina-broken": "carina-host:testcloud-broken",
}
CORE = ("name", "visibility", "disk_format", "container_format", "min_ram", "min_disk", "protected", "tags",
        "os_hidden")


class Glance(Service):
    name = "glance"

    def __init__(self, store, validator):
        super().__init__(store, validator)
        self.route("GET", "/", self.versions, auth=False)
        self.route("GET", "/versions", self.versions, auth=False)
        self.route("GET", "/v2/images", self.list_images)
        self.route("POST", "/v2/images", self.create_image)
        self.route("GET", "/v2/images/{id}", self.get_image)
        self.route("DELETE", "/v2/images/{id}", self.delete_image)
        self.route("GET", "/v2/schemas/image", self.schema)
        self.seed()

    def error_body(self, err):
        return {"code": err.status, "title": {404: "Not Found", 400: "Bad Request", 403: "Forbidden",
                                               401: "Unauthorized", 409: "Conflict"}.get(err.status, "Error"),
                "message": err.message}

    def images(self) -> dict:
        return self.store.coll("glance", "images")

    def seed(self):
        with self.store.lock:
            for name, docker_image in SEED_IMAGES.items():
                image_id = seed_id("image/" + name)
                if image_id not in self.images():
                    self.images()[image_id] = self.image_body({"id": image_id, "name": name,
                                                               "docker_image": docker_image}, owner=None)
            self.store.save()

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
