"""Node credentials: which signing key of each node is the valid one.

A node's key is derived from the Collector's signing secret and the row's ``generation``
(``collector.signing.derive_key``), so no key is stored here: issuing again makes a new
generation (the old key stops at once), revoking stamps ``revoked_at``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from collector.models.base import Base, Timestamps, UTCDateTime


class NodeCredential(Timestamps, Base):
    """The current key of one node (``hva.demo1``) and its broker user."""

    __tablename__ = "node_credentials"

    node_id: Mapped[str] = mapped_column(String(80), unique=True, nullable=False)
    generation: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    broker_user: Mapped[str] = mapped_column(String(120), nullable=False)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
