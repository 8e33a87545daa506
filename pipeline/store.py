"""EmbeddingStore: identities, tracklets, boxes and prototype features in SQLite, searched with faiss."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from pipeline.errors import PipelineError

logger = logging.getLogger(__name__)

Key = tuple[int, str, int]  # (session, camera, track_id): one tracklet
INDEX_KINDS = ("auto", "flat", "hnsw")
SCHEMA_VERSION = 1
_HNSW_M = 32
_TOMBSTONE_FRACTION = 0.2  # an HNSW index cannot remove vectors: rebuild once this share is dead

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (id INTEGER PRIMARY KEY AUTOINCREMENT, started_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    global_id INTEGER PRIMARY KEY AUTOINCREMENT, created_at REAL NOT NULL, last_seen REAL NOT NULL,
    retired INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS tracklets (
    session INTEGER NOT NULL, camera TEXT NOT NULL, track_id INTEGER NOT NULL, global_id INTEGER,
    first_frame INTEGER NOT NULL, last_frame INTEGER NOT NULL, first_time REAL NOT NULL,
    last_time REAL NOT NULL, closed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (session, camera, track_id));
CREATE INDEX IF NOT EXISTS tracklets_identity ON tracklets (global_id, session);
CREATE TABLE IF NOT EXISTS boxes (
    session INTEGER NOT NULL, camera TEXT NOT NULL, track_id INTEGER NOT NULL, frame INTEGER NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL, confidence REAL NOT NULL);
CREATE INDEX IF NOT EXISTS boxes_camera_frame ON boxes (session, camera, frame);
CREATE TABLE IF NOT EXISTS prototypes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, global_id INTEGER NOT NULL, session INTEGER NOT NULL,
    camera TEXT NOT NULL, track_id INTEGER NOT NULL, vector BLOB NOT NULL, updated_at REAL NOT NULL,
    UNIQUE (session, camera, track_id));
CREATE INDEX IF NOT EXISTS prototypes_identity ON prototypes (global_id);
"""


@dataclass(frozen=True)
class TrackletRecord:
    """One stored tracklet: a local track of one camera in one session and its global identity."""

    session: int
    camera: str
    track_id: int
    global_id: int | None
    first_frame: int
    last_frame: int
    first_time: float
    last_time: float
    closed: bool

    @property
    def key(self) -> Key:
        return (self.session, self.camera, self.track_id)


class EmbeddingStore:
    """A persistent gallery: SQLite holds everything, faiss indexes the prototype vectors for search.

    `path=None` keeps everything in memory. Work is durable once `commit()` returns (WAL journal).
    """

    def __init__(
        self,
        path: Path | str | None,
        dim: int,
        index: str = "auto",
        approximate_threshold: int = 50_000,
        max_prototypes: int = 8,
    ) -> None:
        if index not in INDEX_KINDS:
            raise ValueError(f"index must be one of {', '.join(INDEX_KINDS)}, but got {index!r}")
        if dim < 1 or max_prototypes < 1:
            raise ValueError(f"dim and max_prototypes must be >= 1, but got {dim} and {max_prototypes}")
        self.path = None if path is None else Path(path)
        self.dim = dim
        self.index_kind = index
        self.approximate_threshold = approximate_threshold
        self.max_prototypes = max_prototypes
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(":memory:" if self.path is None else str(self.path))
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise PipelineError(
                f"embedding store {self.path} is not a usable SQLite database ({e}); point store.path at a "
                "new file or at a store an earlier run wrote"
            ) from None
        self._check_meta()
        self._owner: dict[int, int] = {}  # prototype id -> global id
        self._ids_by_key: dict[Key, int] = {}
        self._key_of: dict[int, Key] = {}
        self._dead: set[int] = set()  # removed from SQLite, still inside an HNSW index
        self._rebuild()

    # -- sessions and identities -------------------------------------------------------------------

    def begin_session(self) -> int:
        """Open a new session (one run of the pipeline) and return its id."""
        cur = self._db.execute("INSERT INTO sessions (started_at) VALUES (?)", (time.time(),))
        self._db.commit()
        return int(cur.lastrowid)

    def new_identity(self, timestamp: float) -> int:
        """Create an identity and return its global id; ids keep counting across sessions."""
        cur = self._db.execute(
            "INSERT INTO identities (created_at, last_seen) VALUES (?, ?)", (timestamp, timestamp)
        )
        return int(cur.lastrowid)

    def latest_session(self) -> int | None:
        """The id of the most recent session, or None in a new store."""
        return self._db.execute("SELECT MAX(id) FROM sessions").fetchone()[0]

    @staticmethod
    def stored_dim(path: Path | str) -> int | None:
        """The feature size an existing store file was built with, or None where there is none."""
        if not Path(path).is_file():
            return None
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()
        except sqlite3.DatabaseError:
            return None
        finally:
            db.close()
        return None if row is None else int(row[0])

    def identity_count(self) -> int:
        """The number of identities that are not retired."""
        return self._db.execute("SELECT COUNT(*) FROM identities WHERE retired = 0").fetchone()[0]

    def retire_identity(self, global_id: int) -> None:
        """Mark an identity left with no tracklets as retired and drop its prototypes."""
        self._db.execute("UPDATE identities SET retired = 1 WHERE global_id = ?", (global_id,))
        self._drop_prototypes(self._prototype_ids(global_id))

    def _prototype_ids(self, global_id: int) -> list[int]:
        return [r[0] for r in self._db.execute("SELECT id FROM prototypes WHERE global_id = ?", (global_id,))]

    # -- prototypes and search ---------------------------------------------------------------------

    def add_prototype(
        self, global_id: int, vector: np.ndarray, key: Key, timestamp: float | None = None
    ) -> int:
        """Store `vector` as the prototype of tracklet `key` in `global_id` (replacing its previous one)."""
        vector = np.asarray(vector, np.float32).reshape(-1)
        if vector.shape != (self.dim,):
            raise ValueError(f"vector must have shape ({self.dim},), but got shape {vector.shape}")
        vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        now = time.time() if timestamp is None else timestamp
        self.remove_prototypes(key)
        cur = self._db.execute(
            "INSERT INTO prototypes (global_id, session, camera, track_id, vector, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (global_id, key[0], key[1], int(key[2]), vector.astype("<f4").tobytes(), now),
        )
        self._db.execute(
            "UPDATE identities SET last_seen = MAX(last_seen, ?) WHERE global_id = ?", (now, global_id)
        )
        proto_id = int(cur.lastrowid)
        self._index_add(vector[None], np.array([proto_id], np.int64))
        self._owner[proto_id] = global_id
        self._ids_by_key[key] = proto_id
        self._key_of[proto_id] = key
        stale = self._db.execute(
            "SELECT id FROM prototypes WHERE global_id = ? "
            "ORDER BY updated_at DESC, id DESC LIMIT -1 OFFSET ?",
            (global_id, self.max_prototypes),
        ).fetchall()
        self._drop_prototypes([r[0] for r in stale])
        self._maybe_go_approximate()
        return proto_id

    def remove_prototypes(self, key: Key) -> None:
        """Drop the prototype of tracklet `key`, if it has one."""
        ids = [
            r[0]
            for r in self._db.execute(
                "SELECT id FROM prototypes WHERE session = ? AND camera = ? AND track_id = ?",
                (key[0], key[1], int(key[2])),
            )
        ]
        self._drop_prototypes(ids)

    def prototype_count(self) -> int:
        """The number of prototype vectors in the gallery."""
        return len(self._owner)

    def search(
        self, vectors: np.ndarray, k: int, exclude: Sequence[Key | None] | None = None
    ) -> list[dict[int, float]]:
        """For each query row, up to `k` identities and their best cosine similarity, best first.

        `exclude[i]` names a tracklet whose own prototype query i must not see (re-deciding it).
        """
        vectors = np.ascontiguousarray(np.asarray(vectors, np.float32).reshape(-1, self.dim))
        results: list[dict[int, float]] = [{} for _ in range(len(vectors))]
        if not self._owner or len(vectors) == 0:
            return results
        excluded = [
            None if exclude is None else self._ids_by_key.get(exclude[i]) for i in range(len(vectors))
        ]
        raw_k = min(self._index.ntotal, k * self.max_prototypes + 1 + len(self._dead))
        if self._hnsw is not None:
            self._hnsw.hnsw.efSearch = max(64, raw_k)
        sims, ids = self._index.search(vectors, raw_k)
        for row, (row_sims, row_ids) in enumerate(zip(sims, ids, strict=True)):
            best: dict[int, float] = {}
            for sim, proto_id in zip(row_sims, row_ids, strict=True):
                gid = self._owner.get(int(proto_id))
                if gid is None or int(proto_id) == excluded[row] or gid in best:
                    continue
                best[gid] = float(sim)
                if len(best) == k:
                    break
            results[row] = best
        return results

    def prototypes(self, global_ids: Iterable[int] | None = None) -> list[tuple[int, Key, np.ndarray]]:
        """Stored prototypes as (global_id, tracklet key, unit vector (dim,) float32), optionally of some ids."""
        sql, args = "SELECT global_id, session, camera, track_id, vector FROM prototypes", []
        if global_ids is not None:
            gids = [int(g) for g in global_ids]
            if not gids:
                return []
            sql += f" WHERE global_id IN ({', '.join('?' * len(gids))})"
            args = gids
        return [
            (r[0], (r[1], r[2], r[3]), np.frombuffer(r[4], "<f4").astype(np.float32))
            for r in self._db.execute(sql + " ORDER BY id", args)
        ]

    @property
    def approximate(self) -> bool:
        """True when the faiss index is an HNSW graph rather than an exact flat index."""
        return self._hnsw is not None

    # -- tracklets and boxes -----------------------------------------------------------------------

    def upsert_tracklet(
        self,
        session: int,
        camera: str,
        track_id: int,
        *,
        global_id: int | None,
        first_frame: int,
        last_frame: int,
        first_time: float,
        last_time: float,
        closed: bool = False,
    ) -> None:
        """Insert or update one tracklet's identity and span."""
        self._db.execute(
            "INSERT INTO tracklets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (session, camera, track_id) DO UPDATE SET global_id = excluded.global_id, "
            "first_frame = excluded.first_frame, "
            "last_frame = excluded.last_frame, first_time = excluded.first_time, "
            "last_time = excluded.last_time, closed = excluded.closed",
            (
                session,
                camera,
                int(track_id),
                global_id,
                first_frame,
                last_frame,
                first_time,
                last_time,
                closed,
            ),
        )

    def tracklets(
        self, session: int | None = None, global_ids: Iterable[int] | None = None
    ) -> list[TrackletRecord]:
        """Stored tracklets, optionally of one session and/or of some identities."""
        sql, args = "SELECT * FROM tracklets WHERE 1", []
        if session is not None:
            sql += " AND session = ?"
            args.append(session)
        if global_ids is not None:
            gids = [int(g) for g in global_ids]
            if not gids:
                return []
            sql += f" AND global_id IN ({', '.join('?' * len(gids))})"
            args.extend(gids)
        rows = self._db.execute(sql + " ORDER BY session, camera, first_frame, track_id", args)
        return [TrackletRecord(*r[:8], closed=bool(r[8])) for r in rows]

    def add_boxes(self, rows: Iterable[Sequence]) -> None:
        """Append boxes, each (session, camera, track_id, frame, x1, y1, x2, y2, confidence)."""
        self._db.executemany("INSERT INTO boxes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def boxes(
        self, session: int, camera: str
    ) -> Iterator[tuple[int, int, float, float, float, float, float]]:
        """One camera's boxes of a session in frame order: (track_id, frame, x1, y1, x2, y2, confidence)."""
        yield from self._db.execute(
            "SELECT track_id, frame, x1, y1, x2, y2, confidence FROM boxes WHERE session = ? AND camera = ? "
            "ORDER BY frame, track_id",
            (session, camera),
        )

    # -- housekeeping ------------------------------------------------------------------------------

    def forget_identity(self, global_id: int) -> dict[str, int]:
        """Erase one identity: its prototypes (SQLite and faiss), tracklets, boxes and its own row.

        Deleted content is overwritten (SQLite `secure_delete`), the write-ahead log is checkpointed and
        truncated and the database vacuumed, so none of the erased bytes stay in the store's files.
        Returns how many prototypes, tracklets and boxes went.
        """
        gid = int(global_id)
        keys = [t.key for t in self.tracklets(global_ids=[gid])]
        self._db.execute("PRAGMA secure_delete = ON")
        protos = self._prototype_ids(gid)
        self._drop_prototypes(protos)
        boxes = 0
        for session, camera, track_id in keys:
            boxes += self._db.execute(
                "DELETE FROM boxes WHERE session = ? AND camera = ? AND track_id = ?",
                (session, camera, track_id),
            ).rowcount
        self._db.execute("DELETE FROM tracklets WHERE global_id = ?", (gid,))
        self._db.execute("DELETE FROM identities WHERE global_id = ?", (gid,))
        self._db.commit()
        self._db.execute("VACUUM")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if self._hnsw is not None:  # an HNSW graph keeps removed vectors: build it again without them
            self._rebuild()
        return {"prototypes": len(protos), "tracklets": len(keys), "boxes": boxes}

    def delete_older_than(self, timestamp: float) -> int:
        """Retention: drop prototypes last updated before `timestamp` (Unix time); returns how many."""
        ids = [r[0] for r in self._db.execute("SELECT id FROM prototypes WHERE updated_at < ?", (timestamp,))]
        self._drop_prototypes(ids)
        return len(ids)

    def commit(self) -> None:
        """Make everything written so far durable."""
        self._db.commit()

    def close(self) -> None:
        """Commit and close the database."""
        self._db.commit()
        self._db.close()

    def __enter__(self) -> EmbeddingStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------------

    def _check_meta(self) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta"))
        if not meta:
            self._db.executemany(
                "INSERT INTO meta VALUES (?, ?)", [("dim", str(self.dim)), ("schema", str(SCHEMA_VERSION))]
            )
            self._db.commit()
            return
        if int(meta["dim"]) != self.dim:
            self._db.close()
            raise PipelineError(
                f"embedding store {self.path} holds {meta['dim']}-dimensional features but the re-ID model "
                f"gives {self.dim}: it was built with another model; point the store at a new file or "
                f"use the model it was built with"
            )

    def _rebuild(self) -> None:
        """Build the faiss index from the prototypes in SQLite."""
        count = self._db.execute("SELECT COUNT(*) FROM prototypes").fetchone()[0]
        approximate = self.index_kind == "hnsw" or (
            self.index_kind == "auto" and count > self.approximate_threshold
        )
        if approximate:
            self._hnsw = faiss.IndexHNSWFlat(self.dim, _HNSW_M, faiss.METRIC_INNER_PRODUCT)
            self._index = faiss.IndexIDMap2(self._hnsw)
        else:
            self._hnsw = None
            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        self._owner.clear()
        self._ids_by_key.clear()
        self._key_of.clear()
        self._dead.clear()
        cursor = self._db.execute("SELECT id, global_id, session, camera, track_id, vector FROM prototypes")
        while batch := cursor.fetchmany(4096):
            ids = np.array([r[0] for r in batch], np.int64)
            vectors = np.stack([np.frombuffer(r[5], "<f4") for r in batch]).astype(np.float32)
            self._index_add(vectors, ids)
            for r in batch:
                self._owner[r[0]] = r[1]
                self._ids_by_key[(r[2], r[3], r[4])] = r[0]
                self._key_of[r[0]] = (r[2], r[3], r[4])
        logger.debug("gallery index: %d prototypes, %s", count, "hnsw" if approximate else "flat")

    def _index_add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self._index.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids)

    def _drop_prototypes(self, ids: list[int]) -> None:
        if not ids:
            return
        self._db.executemany("DELETE FROM prototypes WHERE id = ?", [(i,) for i in ids])
        for proto_id in ids:
            self._owner.pop(proto_id, None)
            key = self._key_of.pop(proto_id, None)
            if key is not None and self._ids_by_key.get(key) == proto_id:
                del self._ids_by_key[key]
        if self._hnsw is None:
            self._index.remove_ids(np.array(ids, np.int64))
            return
        self._dead.update(ids)
        if len(self._dead) > _TOMBSTONE_FRACTION * max(self._index.ntotal, 1):
            self._rebuild()

    def _maybe_go_approximate(self) -> None:
        if self.index_kind == "auto" and self._hnsw is None and len(self._owner) > self.approximate_threshold:
            logger.info(
                "gallery passed %d prototypes: switching to an HNSW index", self.approximate_threshold
            )
            self._rebuild()
