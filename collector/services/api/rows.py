"""What ``instances.py`` and ``volumes.py`` both use: a new volume row (an instance's or a
standalone one), a live backup object, a row's API document (read back after a write, or
looked up by id, or listed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session

from collector import ids
from collector.errors import InvalidArgument
from collector.models import LOCAL, BackupObject, Instance, Volume

MB = 1 << 20


@dataclass
class VolumeSpec:
    """A volume to create: kept as such in an instance's ``request_params["volumes"]``."""

    size: int
    local: bool
    backup_object_id: str | None = None
    display_name: str | None = None


def add_volume(session: Session, inst: Instance | None, spec: VolumeSpec,
               account_id: str | None = None, service_type: str | None = None,
               uuid: str | None = None, add: bool = True) -> Volume:
    """A volume in ``scheduling``: the instance's (its account and service type), or a
    standalone one of ``account_id`` and ``service_type``. Its id is ``uuid`` or a new one;
    the row is written at the caller's next flush (with the instance's other rows), or by
    the caller (``add`` false: not added to the session)."""
    vol = Volume(uuid=uuid or ids.new_uuid(), account_id=inst.account_id if inst else account_id,
                 size=spec.size,
                 state="scheduling", instance_id=inst.id if inst else None,
                 volume_type=LOCAL if spec.local else None,
                 backup_object_id=spec.backup_object_id, display_name=spec.display_name,
                 service_type=inst.service_type if inst else service_type)
    if add:
        session.add(vol)
    return vol


def live_backup_object(session: Session, backup_object_id: str) -> BackupObject:
    """The backup object (UnknownBackupObjectID when there is none or it is deleted)."""
    bo = BackupObject.by_cuuid(session, backup_object_id)
    if bo.deleted_at is not None:
        raise BackupObject.not_found(f"backup object {backup_object_id} is deleted")
    return bo


def fresh_document(session: Session, row: Any, query: Select,
                   build: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """The document of a row just written, read back with everything it shows."""
    return fresh_documents(session, [row], query, build)[0]


def fresh_documents(session: Session, rows: list[Any], query: Select,
                    build: Callable[[Any], dict[str, Any]]) -> list[dict[str, Any]]:
    """The documents of rows of one model just written, in their order, read back in one
    query."""
    session.flush()
    model = type(rows[0])
    for row in rows:
        session.expire(row)
    loaded = {found.id: found for found in session.scalars(
        query.where(model.id.in_([row.id for row in rows]))
        .execution_options(populate_existing=True)).unique()}
    return [build(loaded[row.id]) for row in rows]


def shown_document(session: Session, model: Any, cuuid: str, query: Select,
                   build: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """The document of the row ``cuuid`` (its typed unknown-id error when there is none)."""
    raw = ids.raw_part(cuuid, model.prefix)
    row = session.scalars(query.where(model.uuid == raw)).first()
    if row is None:
        raise model.not_found(f"unknown id '{cuuid}'")
    return build(row)


def listed_documents(session: Session, model: Any, query: Select,
                     build: Callable[[Any], dict[str, Any]], ended_at: Any,
                     state: str | None, account_id: str | None, include_ended: bool,
                     limit: int) -> list[dict[str, Any]]:
    """Documents of ``model``'s rows, newest first: of ``state`` when given, else those not
    ended (``ended_at`` unset) unless ``include_ended``; of ``account_id`` when given."""
    if not 1 <= limit <= 1000:
        raise InvalidArgument("limit must be within 1..1000")
    stmt = query.order_by(model.id.desc()).limit(limit)
    if state:
        stmt = stmt.where(model.state == state)
    elif not include_ended:
        stmt = stmt.where(ended_at.is_(None))
    if account_id:
        stmt = stmt.where(model.account_id == account_id)
    return [build(row) for row in session.scalars(stmt).unique()]
