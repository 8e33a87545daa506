"""The gallery's index file and SQLite's record of it: checkpoints, opening, reconciling, migration.

Each prototype vector is kept in one place. The index file beside the database (`gallery.sqlite.faiss`,
faiss's own format) holds every vector up to its last checkpoint; the table `pending_vectors` holds the
float32 vectors added since, keyed by `seq`, the insertion number each prototype row carries. A checkpoint
writes the file under a temporary name and syncs it, records it in meta as `index_next` (its CRC-32, size,
vector count and `seq` watermark: the last insertion it holds), renames it into place, then makes it
`index_file`, marks the index clean and deletes the pending vectors up to the watermark. A crash at any
point leaves a file whose checksum meta records, with the pending vectors it lacks.

`open_index` loads the file as it is when it is `index_file` and the index is clean. Otherwise (a kill
before the checkpoint, a file missing, corrupt or from elsewhere) it reconciles: vectors of prototypes
removed or replaced since the watermark leave the index, pending ones come in, and a prototype whose
vector is in neither place is left out and reported as lost, to be deleted at the next checkpoint, so a
bad file can lose prototypes but never answer with wrong ones. Opening writes nothing: a reader may open
the store while a run writes to it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.gallery_index import SLOT_BITS, GalleryIndex, IndexFile

logger = logging.getLogger(__name__)

# label: the faiss label, global_id << SLOT_BITS | slot; seq: order of insertion, across the store
PROTOTYPES_SCHEMA = """
CREATE TABLE IF NOT EXISTS prototypes (
    label INTEGER PRIMARY KEY, global_id INTEGER NOT NULL, session INTEGER NOT NULL, camera TEXT NOT NULL,
    track_id INTEGER NOT NULL, updated_at REAL NOT NULL, seq INTEGER NOT NULL,
    UNIQUE (session, camera, track_id));
CREATE TABLE IF NOT EXISTS pending_vectors (seq INTEGER PRIMARY KEY, vector BLOB NOT NULL);
"""
_OPEN_TRIES = 3  # a checkpoint may replace the file between reading meta and the file: read again
_ADD_CHUNK = 65_536


@dataclass
class Opened:
    """An index as of the database, and what the store needs to carry on from it."""

    index: GalleryIndex
    next_seq: int  # the insertion number the next prototype gets
    pending: int  # rows in pending_vectors
    lost: list[tuple[int, int]]  # (label, seq) of prototypes whose vector is nowhere


def open_index(db: sqlite3.Connection, path: Path, dim: int, empty_kind: str) -> Opened:
    """The index as of the database now: the file at `path` loaded as it is, or reconciled.

    Reads meta, the file and the pending vectors in one snapshot of the database.
    """
    for attempt in range(_OPEN_TRIES):
        db.execute("BEGIN")
        try:
            meta = dict(db.execute("SELECT key, value FROM meta"))
            records = [json.loads(meta[k]) for k in ("index_file", "index_next") if k in meta]
            loaded = None
            if records and path.is_file():
                loaded = GalleryIndex.load(path, {r["crc"]: r for r in records}, dim)
                if loaded is None and attempt + 1 < _OPEN_TRIES:
                    continue  # maybe replaced by a checkpoint after our snapshot: look again
            index, record = loaded if loaded is not None else (GalleryIndex.empty(dim, empty_kind), None)
            if records and record is None:
                logger.warning(
                    "gallery index %s is missing or does not match the database: prototypes it held are "
                    "left out of search",
                    path,
                )
            watermark = 0 if record is None else int(record["seq"])
            pending_max = db.execute("SELECT MAX(seq) FROM pending_vectors").fetchone()[0] or 0
            clean = (
                record is not None
                and record == records[0]
                and "index_next" not in meta
                and meta.get("index_clean") == "1"
                and index.ntotal == int(record["count"])
            )
            lost = [] if clean else reconcile(db, index, watermark)
            pending = db.execute("SELECT COUNT(*) FROM pending_vectors").fetchone()[0]
            next_seq = max(int(meta.get("seq", 0)), watermark, pending_max) + 1
            return Opened(index, next_seq, pending, lost)
        finally:
            db.rollback()
    raise AssertionError("unreachable")


def reconcile(db: sqlite3.Connection, index: GalleryIndex, watermark: int) -> list[tuple[int, int]]:
    """Bring `index`, loaded from a file holding insertions up to `watermark`, up to the database.

    Returns the (label, seq) of prototypes whose vector is neither in the file nor pending.
    """
    rows = np.array(db.execute("SELECT label, seq FROM prototypes").fetchall(), np.int64).reshape(-1, 2)
    labels, seqs = rows[:, 0], rows[:, 1]
    in_file = labels[seqs <= watermark]
    held = index.labels()
    index.remove(np.setdiff1d(held, in_file))  # removed since, or replaced under the same label
    missing = np.isin(labels, np.setdiff1d(in_file, held)) & (seqs <= watermark)
    lost = list(zip(labels[missing].tolist(), seqs[missing].tolist(), strict=True))
    newer = dict(db.execute("SELECT seq, vector FROM pending_vectors WHERE seq > ?", (watermark,)))
    add_labels, add_vectors = [], []
    for label, seq in rows[seqs > watermark].tolist():
        blob = newer.get(seq)
        if blob is None:
            lost.append((label, seq))
        else:
            add_labels.append(label)
            add_vectors.append(np.frombuffer(blob, "<f4"))
    for start in range(0, len(add_labels), _ADD_CHUNK):
        index.add(
            np.stack(add_vectors[start : start + _ADD_CHUNK]).astype(np.float32),
            np.array(add_labels[start : start + _ADD_CHUNK], np.int64),
        )
    if lost:
        logger.warning("gallery index: %d prototypes have no stored vector; left out of search", len(lost))
    return lost


def checkpoint(
    db: sqlite3.Connection, index: GalleryIndex, path: Path, watermark: int, lost: list[tuple[int, int]]
) -> IndexFile:
    """Write `index` (holding insertions up to `watermark`) to `path` atomically, record it, delete the
    pending vectors it now holds and the `lost` prototypes. The database must have nothing uncommitted."""
    written = index.save(path)
    record = json.dumps(
        {"crc": written.crc, "size": written.size, "count": written.count, "seq": watermark}, sort_keys=True
    )
    # recorded before the rename: an open after a crash in between accepts either file
    db.execute("INSERT OR REPLACE INTO meta VALUES ('index_next', ?)", (record,))
    db.executemany("DELETE FROM prototypes WHERE label = ? AND seq = ?", lost)
    db.commit()
    GalleryIndex.install(path)
    db.executemany(
        "INSERT OR REPLACE INTO meta VALUES (?, ?)",
        [("index_file", record), ("seq", str(watermark)), ("index_clean", "1")],
    )
    db.execute("DELETE FROM meta WHERE key = 'index_next'")
    db.execute("DELETE FROM pending_vectors WHERE seq <= ?", (watermark,))
    db.commit()
    logger.debug("gallery index written: %d vectors, %d bytes", written.count, written.size)
    return written


def mark_changed(db: sqlite3.Connection) -> None:
    """Record, in the transaction under way, that the index no longer matches its file."""
    db.execute("INSERT OR REPLACE INTO meta VALUES ('index_clean', '0')")


def shrink(db: sqlite3.Connection) -> None:
    """Vacuum once free pages (pending vectors a checkpoint deleted) are a fifth of the file; it copies
    only the live rows, a few dozen bytes a prototype."""
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    if db.execute("PRAGMA freelist_count").fetchone()[0] > pages // 5:
        db.execute("VACUUM")


def migrate_v1(db: sqlite3.Connection, schema: int, page_size: int) -> None:
    """Schema 1 kept float32 vectors in the prototypes table: move them to pending_vectors, so that the
    next checkpoint writes the first index file; the database is then vacuumed with `page_size`."""
    db.execute("BEGIN")  # one transaction: a crash leaves the schema-1 store as it was
    db.execute("ALTER TABLE prototypes RENAME TO prototypes_v1")
    for statement in PROTOTYPES_SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    slots: dict[int, int] = {}
    old = db.cursor().execute(
        "SELECT global_id, session, camera, track_id, vector, updated_at FROM prototypes_v1 ORDER BY id"
    )
    seq = 0
    while batch := old.fetchmany(4096):
        rows, vectors = [], []
        for gid, session, camera, track_id, vector, updated_at in batch:
            seq += 1
            slot = slots[gid] = slots.get(gid, -1) + 1
            rows.append((gid << SLOT_BITS | slot, gid, session, camera, track_id, updated_at, seq))
            vectors.append((seq, vector))
        db.executemany("INSERT INTO prototypes VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        db.executemany("INSERT INTO pending_vectors VALUES (?, ?)", vectors)
    db.execute("DROP TABLE prototypes_v1")
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(schema),))
    db.commit()
    db.execute("PRAGMA journal_mode=DELETE")  # a WAL database keeps its page size
    db.execute(f"PRAGMA page_size = {page_size}")
    db.execute("VACUUM")  # the old vectors' pages go; the page size takes effect
    db.execute("PRAGMA journal_mode=WAL")
