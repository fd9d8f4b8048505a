"""Image updates reported by agents (``hva-collector.update_image`` and its sta twin)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from collector.errors import InvalidArgument
from collector.fields import NULL
from collector.models import Image
from collector.services.agent_reports import apply_agent_report
from collector.states import IMAGE_TRANSITIONS

UPDATABLE_IMAGE_FIELDS: dict[str, tuple[type, ...]] = {
    "state": (str,), "deleted_at": (str, NULL), "backup_object_id": (str, NULL),
    "description": (str, NULL), "display_name": (str, NULL), "file_format": (str, NULL),
    "root_device": (str, NULL), "features": (dict, NULL), "volumes": (list, NULL),
    "is_cacheable": (bool,), "os_type": (str,),
}


def _check_image_report(image: Image, data: dict[str, Any]) -> None:
    if "os_type" in data and data["os_type"] not in ("linux", "windows"):
        raise InvalidArgument(f"unknown os_type: {data['os_type']!r}")


def update_image(session: Session, image_id: str, data: dict[str, Any]) -> None:
    """Apply an agent's report on an image; ``state: deleted`` soft-deletes it."""
    apply_agent_report(session, Image, image_id, data, kind="image",
                       fields=UPDATABLE_IMAGE_FIELDS, transitions=IMAGE_TRANSITIONS,
                       check=_check_image_report)
