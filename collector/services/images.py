"""Image updates reported by agents (``hva-collector.update_image`` and its sta twin)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from collector.errors import InvalidArgument
from collector.fields import NULL, apply_deleted_report, check_fields
from collector.models import Image
from collector.states import IMAGE_TRANSITIONS, check_transition

UPDATABLE_IMAGE_FIELDS: dict[str, tuple[type, ...]] = {
    "state": (str,), "deleted_at": (str, NULL), "backup_object_id": (str, NULL),
    "description": (str, NULL), "display_name": (str, NULL), "file_format": (str, NULL),
    "root_device": (str, NULL), "features": (dict, NULL), "volumes": (list, NULL),
    "is_cacheable": (bool,), "os_type": (str,),
}


def update_image(session: Session, image_id: str, data: dict[str, Any]) -> None:
    """Apply an agent's report on an image; ``state: deleted`` soft-deletes it."""
    check_fields("image", data, UPDATABLE_IMAGE_FIELDS, Image)
    image = Image.by_cuuid(session, image_id, for_update=True)
    if apply_deleted_report(image, data):
        return
    if image.state == "deleted":
        return  # a late report about a deleted image changes nothing
    if "os_type" in data and data["os_type"] not in ("linux", "windows"):
        raise InvalidArgument(f"unknown os_type: {data['os_type']!r}")
    if "state" in data and check_transition("image", IMAGE_TRANSITIONS, image.state,
                                            data["state"], terminal="deleted"):
        image.state = data["state"]
    for key in UPDATABLE_IMAGE_FIELDS.keys() - {"state", "deleted_at"}:
        if key in data:
            setattr(image, key, data[key])
