"""The database: engines and sessions (``engine``), the unit of work (``unit_of_work``), the
outbox the domain writes jobs and events to (``outbox``), compiled Core queries for the hot
reads (``compiled``) and the schema's migrations (``migrate``).

The names callers use most are re-exported here.
"""

from collector.db.engine import (
    EAGER_CHUNK,
    any_of,
    db_now,
    dialect_name,
    dispose_engines,
    get_engine,
    insert_all_if_absent,
    insert_if_absent,
    insert_now,
    insert_objects_now,
    make_engine,
    matches_any,
    session_factory,
    skip_locked,
)
from collector.db.transactions import (
    OUTBOX_ROWS,
    UnitOfWork,
    record_outbox_row,
    settings_of,
    unit_of_work,
)
