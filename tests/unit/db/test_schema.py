"""The migration creates exactly the model's schema, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select

from collector.db import get_engine
from collector.errors import InvalidArgument, UnknownInstanceID
from collector.models import Base, HostNode, Image, Instance
from collector.models.nodes import FREE_CAPACITY_INDEXES


def _declared(_obj, name, type_, *_reflected_and_compared) -> bool:
    """Everything but the expression indexes only the migration makes (see the models)."""
    return not (type_ == "index" and name in FREE_CAPACITY_INDEXES)


def test_migration_matches_the_models(db_url):
    with get_engine(db_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(
            conn, opts={"include_object": _declared}), Base.metadata)
    assert diff == []


def test_canonical_ids_and_lookup_rules(session):
    host = HostNode(node_id="hva.schema1", offering_cpu_cores=4, offering_memory_size=4096)
    image = Image()
    session.add_all([host, image])
    session.flush()
    inst = Instance(image_id=image.id, host_node_id=host.id)
    session.add(inst)
    session.flush()
    assert inst.canonical_uuid == f"i-{inst.uuid}" and len(inst.uuid) == 8
    assert Instance.by_cuuid(session, inst.canonical_uuid) is inst
    assert session.scalars(select(Instance).where(Instance.uuid == inst.uuid)).one() is inst
    try:
        Instance.by_cuuid(session, host.canonical_uuid)
        raise AssertionError("a wrong prefix must be refused")
    except InvalidArgument:
        pass
    try:
        Instance.by_cuuid(session, "i-zzzzzzzz")
        raise AssertionError("an unknown id must raise its typed error")
    except UnknownInstanceID as exc:
        assert exc.error_type == "UnknownInstanceID"
