"""SSH public keys from what Ironic keeps as a node's config drive (``instance_info.configdrive``):
a dict ({"meta_data": {"public_keys": ...}, "user_data": ...}), or a string that is a base64
(optionally gzipped) ISO 9660 image holding openstack/<version>/meta_data.json, as
openstacksdk's ``baremetal.configdrive.build`` makes it."""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import re
import struct

SECTOR = 2048
KEY_LINE = re.compile(r"((?:ssh-(?:rsa|ed25519|dss)|ecdsa-sha2-nistp\d+|sk-\S+)\s+[A-Za-z0-9+/=]+(?:[ \t]+[^\n\"']*)?)")


def keys_from_meta(meta: dict) -> list[str]:
    keys = []
    public = meta.get("public_keys") or {}
    keys.extend(public.values() if isinstance(public, dict) else public)
    for item in meta.get("keys") or []:
        if isinstance(item, dict) and item.get("data"):
            keys.append(item["data"])
    return [k.strip() for k in keys if isinstance(k, str) and k.strip()]


def keys_from_user_data(user_data) -> list[str]:
    """cloud-config ``ssh_authorized_keys`` entries (any key-looking line, really)."""
    if not isinstance(user_data, str):
        return []
    if "ssh_authorized_keys" not in user_data:
        return []
    return [m.group(1).strip() for m in KEY_LINE.finditer(user_data)]


def iso_files(image: bytes):
    """Yield the contents of every file of an ISO 9660 image (names are not needed)."""
    pvd = 16 * SECTOR
    if image[pvd + 1:pvd + 6] != b"CD001":
        return
    root = image[pvd + 156:pvd + 156 + 34]
    todo, seen = [(struct.unpack_from("<I", root, 2)[0], struct.unpack_from("<I", root, 10)[0])], set()
    while todo:
        extent, size = todo.pop()
        if extent in seen:
            continue
        seen.add(extent)
        data = image[extent * SECTOR:extent * SECTOR + size]
        pos = 0
        while pos < len(data):
            length = data[pos]
            if length == 0:  # records never cross a sector: go to the next one
                pos = (pos // SECTOR + 1) * SECTOR
                continue
            rec = data[pos:pos + length]
            pos += length
            name_len = rec[32]
            name = rec[33:33 + name_len]
            if name in (b"\x00", b"\x01"):
                continue
            (child,), (child_size,) = struct.unpack_from("<I", rec, 2), struct.unpack_from("<I", rec, 10)
            if rec[25] & 2:  # a directory
                todo.append((child, child_size))
            elif child_size < 4 * 1024 * 1024:
                yield image[child * SECTOR:child * SECTOR + child_size]


def public_keys(configdrive) -> list[str]:  # noqa: PLR0911 - every unreadable form ends early
    """The SSH public keys in a config drive as Ironic stores it; [] when there are none or it
    is not readable (masked as '******' by Ironic's API, a Swift URL, ...)."""
    if isinstance(configdrive, dict):
        return keys_from_meta(configdrive.get("meta_data") or {}) or keys_from_user_data(configdrive.get("user_data"))
    if not isinstance(configdrive, str) or not configdrive or set(configdrive) == {"*"}:
        return []
    text = configdrive.strip()
    if text.startswith("{"):
        try:
            return public_keys(json.loads(text))
        except ValueError:
            return []
    try:
        raw = base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        return []
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            return []
    user_data_keys = []
    for content in iso_files(raw):
        try:
            doc = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            if b"ssh_authorized_keys" in content:
                user_data_keys = keys_from_user_data(content.decode("utf-8", "replace"))
            continue
        if isinstance(doc, dict) and ("public_keys" in doc or "keys" in doc):
            found = keys_from_meta(doc)
            if found:
                return found
    return user_data_keys
