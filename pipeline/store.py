"""EmbeddingStore: identities, tracklets, boxes and prototypes in SQLite, their vectors in a faiss index file.

Prototype vectors live in the index file beside the database (`gallery.sqlite.faiss`: float32 while search
is exact, 8-bit codes in inverted lists past `approximate_threshold`) and, until the next checkpoint, in
SQLite's `pending_vectors`, so `commit()` makes new work durable without rewriting the file. A checkpoint
runs at `close()` and at `commit()` once the pending vectors reach a quarter of the index;
`pipeline/gallery_file.py` has how the file is written, recorded, checked and caught up at open.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import gallery_file
from pipeline.errors import PipelineError
from pipeline.gallery_index import SLOT_BITS, GalleryIndex, identities_of

logger = logging.getLogger(__name__)

Key = tuple[int, str, int]  # (session, camera, track_id): one tracklet
INDEX_KINDS = ("auto", "flat", "hnsw", "ivf")
SCHEMA_VERSION = 2
_SLOTS = (1 << SLOT_BITS) - 1
_STAGE = 1024  # vectors gathered before one batched add to the index
_MIN_PENDING = 10_000  # checkpoint at commit() once pending vectors pass this and a quarter of the index
_MIN_IVF = 256  # below this many vectors an ivf index is not trained: search stays exact
_PAGE_SIZE = 8192
_WAL_PAGES = 4096  # pages the write-ahead log grows to before SQLite copies them into the database

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
    """A persistent gallery: SQLite holds the records, a faiss index (and its file) the prototype vectors.

    `path=None` keeps everything in memory. Work is durable once `commit()` returns (WAL journal).
    `index`: `flat` searches exactly; `ivf` searches 8-bit codes in inverted lists (trained on the
    gallery once it holds a few hundred vectors, retrained as it grows, with the number of lists probed
    chosen for recall); `auto` is flat until the gallery passes `approximate_threshold` and ivf after
    (flat again below half of it), switching as prototypes come and go, so a store that only searches
    keeps the kind its file holds; `hnsw` searches a graph over float32 vectors.
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
        if dim < 1 or not 1 <= max_prototypes <= _SLOTS:
            raise ValueError(
                f"dim must be >= 1 and max_prototypes in [1, {_SLOTS}], but got {dim} and {max_prototypes}"
            )
        self.path = None if path is None else Path(path)
        self.index_path = None if self.path is None else self.path.with_name(self.path.name + ".faiss")
        self.dim = dim
        self.index_kind = index
        self.approximate_threshold = approximate_threshold
        self.max_prototypes = max_prototypes
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._staged: dict[int, np.ndarray] = {}  # label -> vector, not yet in the index
        self._changed = False  # this instance changed the gallery since its last checkpoint
        self._migrated = False
        self._checkpoints = 0  # index files this instance wrote
        self._lost: list[tuple[int, int]] = []  # (label, seq) with no vector anywhere: deleted at checkpoint
        self._pending = 0  # rows in pending_vectors
        self._next_seq = 1
        self._adapt_at = 0  # gallery size at which _adapt_kind looks again (switch or retrain)
        self._seen: dict[int, float] = {}  # global id -> latest prototype time, written at commit
        self._db = sqlite3.connect(":memory:" if self.path is None else str(self.path))
        try:
            # a pending vector (2 KiB at dim 512) takes a whole 4 KiB page; 3 fit in 8 KiB (new files only)
            self._db.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(f"PRAGMA wal_autocheckpoint = {_WAL_PAGES}")  # fewer, larger WAL checkpoints
            self._db.execute(f"PRAGMA journal_size_limit = {_WAL_PAGES * _PAGE_SIZE * 2}")
            self._db.executescript(_SCHEMA)
            self._check_meta()
            self._db.executescript(gallery_file.PROTOTYPES_SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise PipelineError(
                f"embedding store {self.path} is not a usable SQLite database ({e}); point store.path at a "
                "new file or at a store an earlier run wrote"
            ) from None
        self._index = self._open_index()
        if self._migrated:
            self._mark_changed()  # close() writes the first index file
        if self.index_kind != "auto":
            self._adapt_kind()  # the kind asked for; auto changes kind only as the gallery grows or shrinks

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

    @staticmethod
    def files(path: Path | str) -> list[Path]:
        """The files a store at `path` keeps that exist now: database, its journal files, the index file."""
        path = Path(path)
        names = [
            path.name,
            f"{path.name}-wal",
            f"{path.name}-shm",
            f"{path.name}.faiss",
            f"{path.name}.faiss.tmp",
        ]
        return [p for p in (path.with_name(n) for n in names) if p.is_file()]

    def identity_count(self) -> int:
        """The number of identities that are not retired."""
        return self._db.execute("SELECT COUNT(*) FROM identities WHERE retired = 0").fetchone()[0]

    def retire_identity(self, global_id: int) -> None:
        """Mark an identity left with no tracklets as retired and drop its prototypes."""
        self._db.execute("UPDATE identities SET retired = 1 WHERE global_id = ?", (global_id,))
        self._drop([(label, seq) for label, _, seq in self._members(global_id)])

    # -- prototypes and search ---------------------------------------------------------------------

    def add_prototype(
        self, global_id: int, vector: np.ndarray, key: Key, timestamp: float | None = None
    ) -> int:
        """Store `vector` as the prototype of tracklet `key` in `global_id` (replacing its previous one).

        Returns the prototype's label (its id in the index).
        """
        vector = np.asarray(vector, np.float32).reshape(-1)
        if vector.shape != (self.dim,):
            raise ValueError(f"vector must have shape ({self.dim},), but got shape {vector.shape}")
        vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        now = time.time() if timestamp is None else timestamp
        self._drop(
            self._db.execute(
                "DELETE FROM prototypes WHERE session = ? AND camera = ? AND track_id = ? RETURNING label, seq",
                (key[0], key[1], int(key[2])),
            ).fetchall()
        )  # the tracklet's previous prototype
        members = self._members(global_id)
        used = {label & _SLOTS for label, _, _ in members}
        slot = next(
            s
            for s in range(_SLOTS + 1)
            if s not in used and not self._index.is_dead(global_id << SLOT_BITS | s)
        )
        label, seq = global_id << SLOT_BITS | slot, self._next_seq
        self._next_seq += 1
        self._db.execute(
            "INSERT INTO prototypes VALUES (?, ?, ?, ?, ?, ?, ?)",
            (label, global_id, key[0], key[1], int(key[2]), now, seq),
        )
        if self.path is not None:
            self._db.execute(
                "INSERT INTO pending_vectors VALUES (?, ?)", (seq, vector.astype("<f4").tobytes())
            )
            self._pending += 1
        self._seen[global_id] = max(now, self._seen.get(global_id, now))
        self._mark_changed()
        self._staged[label] = vector
        members.append((label, now, seq))
        if len(members) > self.max_prototypes:
            members.sort(key=lambda m: (m[1], m[2]), reverse=True)  # newest first; ties: later insert
            self._drop([(m[0], m[2]) for m in members[self.max_prototypes :]])
        if len(self._staged) >= _STAGE or self._index.ntotal + len(self._staged) >= self._adapt_at:
            self._flush()
            self._adapt_kind()
        return label

    def remove_prototypes(self, key: Key) -> None:
        """Drop the prototype of tracklet `key`, if it has one."""
        rows = self._db.execute(
            "SELECT label, seq FROM prototypes WHERE session = ? AND camera = ? AND track_id = ?",
            (key[0], key[1], int(key[2])),
        ).fetchall()
        self._drop(rows)

    def prototype_count(self) -> int:
        """The number of prototype vectors in the gallery."""
        return self._index.ntotal + len(self._staged)

    def search(
        self, vectors: np.ndarray, k: int, exclude: Sequence[Key | None] | None = None
    ) -> list[dict[int, float]]:
        """For each query row, up to `k` identities and their best cosine similarity, best first.

        `exclude[i]` names a tracklet whose own prototype query i must not see (re-deciding it).
        """
        vectors = np.ascontiguousarray(np.asarray(vectors, np.float32).reshape(-1, self.dim))
        self._flush()
        results: list[dict[int, float]] = [{} for _ in range(len(vectors))]
        if self._index.ntotal == 0 or len(vectors) == 0:
            return results
        excluded = [self._label_of(None if exclude is None else exclude[i]) for i in range(len(vectors))]
        sims, labels = self._index.search(vectors, self._raw_k(k))
        gids = identities_of(labels)
        for row in range(len(vectors)):
            best: dict[int, float] = {}
            for sim, label, gid in zip(sims[row].tolist(), labels[row].tolist(), gids[row].tolist()):
                if label < 0:
                    break  # the rest of the row is empty
                if label == excluded[row] or gid in best:
                    continue
                best[gid] = sim
                if len(best) == k:
                    break
            results[row] = best
        return results

    def prototypes(self, global_ids: Iterable[int] | None = None) -> list[tuple[int, Key, np.ndarray]]:
        """Stored prototypes as (global_id, tracklet key, unit vector (dim,) float32), optionally of some ids.

        Past the approximate threshold the vectors are decoded from their 8-bit codes.
        """
        self._flush()
        columns = "SELECT label, global_id, session, camera, track_id, seq FROM prototypes"
        if global_ids is None:
            rows = self._db.execute(columns).fetchall()
        else:
            rows = []
            for gid in {int(g) for g in global_ids}:
                rows += self._db.execute(
                    columns + " WHERE label BETWEEN ? AND ?", _label_range(gid)
                ).fetchall()
        rows.sort(key=lambda r: r[5])
        found = []
        for start in range(0, len(rows), 4096):
            part = rows[start : start + 4096]
            for r, vector in zip(part, self._vectors([r[0] for r in part]), strict=True):
                if vector is not None:
                    found.append((r[1], (r[2], r[3], r[4]), vector))
        return found

    @property
    def approximate(self) -> bool:
        """True when search goes through an approximate index (ivf or hnsw) rather than an exact one."""
        return self._index.kind != "flat"

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
        """Erase one identity: its prototypes (SQLite and the index file), tracklets, boxes and its own row.

        Deleted content is overwritten (SQLite `secure_delete`), the index file is written again without
        the identity's vectors, the write-ahead log is checkpointed and truncated and the database
        vacuumed, so none of the erased bytes stay in the store's files. Returns how many prototypes,
        tracklets and boxes went.
        """
        gid = int(global_id)
        keys = [t.key for t in self.tracklets(global_ids=[gid])]
        self._db.execute("PRAGMA secure_delete = ON")
        protos = [(label, seq) for label, _, seq in self._members(gid)]
        self._drop(protos)
        boxes = 0
        for session, camera, track_id in keys:
            boxes += self._db.execute(
                "DELETE FROM boxes WHERE session = ? AND camera = ? AND track_id = ?",
                (session, camera, track_id),
            ).rowcount
        self._db.execute("DELETE FROM tracklets WHERE global_id = ?", (gid,))
        self._db.execute("DELETE FROM identities WHERE global_id = ?", (gid,))
        self._db.commit()
        if self.path is not None:
            self._checkpoint()
        self._index.compact()
        self._db.execute("VACUUM")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return {"prototypes": len(protos), "tracklets": len(keys), "boxes": boxes}

    def delete_older_than(self, timestamp: float) -> int:
        """Retention: drop prototypes last updated before `timestamp` (Unix time); returns how many."""
        rows = self._db.execute(
            "SELECT label, seq FROM prototypes WHERE updated_at < ?", (timestamp,)
        ).fetchall()
        self._drop(rows)
        return len(rows)

    def commit(self) -> None:
        """Make everything written so far durable (and write the index file once much is pending)."""
        self._write_seen()
        self._db.commit()
        if self.path is not None and self._pending >= max(_MIN_PENDING, self._index.ntotal // 4):
            self._checkpoint()

    def close(self) -> None:
        """Commit, write the index file if this store changed the gallery, and close the database."""
        try:
            self._write_seen()
            self._db.commit()
            if self.path is not None and self._changed:
                self._checkpoint()
            if self._checkpoints:
                gallery_file.shrink(self._db)
        finally:
            self._db.close()

    def __enter__(self) -> EmbeddingStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals: records ------------------------------------------------------------------------

    def _members(self, global_id: int) -> list[tuple[int, float, int]]:
        """(label, updated_at, seq) of one identity's prototypes."""
        return self._db.execute(
            "SELECT label, updated_at, seq FROM prototypes WHERE label BETWEEN ? AND ?",
            _label_range(global_id),
        ).fetchall()

    def _label_of(self, key: Key | None) -> int | None:
        if key is None:
            return None
        row = self._db.execute(
            "SELECT label FROM prototypes WHERE session = ? AND camera = ? AND track_id = ?",
            (key[0], key[1], int(key[2])),
        ).fetchone()
        return None if row is None else row[0]

    def _drop(self, rows: Sequence[tuple[int, int]]) -> None:
        """Delete prototypes given as (label, seq): their rows, pending vectors and index entries."""
        if not rows:
            return
        self._db.executemany("DELETE FROM prototypes WHERE label = ?", [(r[0],) for r in rows])
        if self.path is not None:
            cur = self._db.executemany("DELETE FROM pending_vectors WHERE seq = ?", [(r[1],) for r in rows])
            self._pending = max(0, self._pending - max(cur.rowcount, 0))
        in_index = [label for label, _ in rows if self._staged.pop(label, None) is None]
        self._index.remove(in_index)
        self._mark_changed()
        if self._index.kind != self._wanted_kind() or self._index.needs_calibration:
            self._adapt_kind()  # shrunk: exact search again, or nprobe for the smaller gallery

    def _write_seen(self) -> None:
        if self._seen:
            self._db.executemany(
                "UPDATE identities SET last_seen = MAX(last_seen, ?) WHERE global_id = ?",
                [(t, g) for g, t in self._seen.items()],
            )
            self._seen.clear()

    def _mark_changed(self) -> None:
        if not self._changed and self.path is not None:
            gallery_file.mark_changed(self._db)
        self._changed = True

    def _check_meta(self) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta"))
        if not meta:
            self._db.executemany(
                "INSERT INTO meta VALUES (?, ?)", [("dim", str(self.dim)), ("schema", str(SCHEMA_VERSION))]
            )
            return
        if int(meta["dim"]) != self.dim:
            self._db.close()
            raise PipelineError(
                f"embedding store {self.path} holds {meta['dim']}-dimensional features but the re-ID model "
                f"gives {self.dim}: it was built with another model; point the store at a new file or "
                f"use the model it was built with"
            )
        schema = int(meta.get("schema", 1))
        if schema > SCHEMA_VERSION:
            self._db.close()
            raise PipelineError(
                f"embedding store {self.path} was written by a newer version of this program (schema "
                f"{schema}, this one reads up to {SCHEMA_VERSION})"
            )
        if schema == 1:
            logger.info("embedding store %s: moving prototype vectors out of the prototypes table", self.path)
            gallery_file.migrate_v1(self._db, SCHEMA_VERSION, _PAGE_SIZE)
            self._migrated = True

    # -- internals: the index ----------------------------------------------------------------------

    def _raw_k(self, k: int = 10) -> int:
        """Nearest vectors a search for `k` identities fetches: each identity may hold max_prototypes."""
        return k * self.max_prototypes + 1

    def _wanted_kind(self) -> str:
        """The kind of index to hold now: what was asked for, where the gallery is large enough for it."""
        count = self._index.ntotal + len(self._staged)
        current = self._index.kind
        if self.index_kind in ("flat", "hnsw"):
            return self.index_kind
        if self.index_kind == "ivf":
            return "ivf" if count >= _MIN_IVF or current == "ivf" else "flat"
        if current == "ivf":
            return "flat" if count <= self.approximate_threshold // 2 else "ivf"
        return "ivf" if count > max(self.approximate_threshold, _MIN_IVF - 1) else "flat"

    def _adapt_kind(self) -> None:
        """Switch between exact and ivf search as the gallery grows or shrinks; retrain grown ivf lists."""
        wanted = self._wanted_kind()
        if wanted != self._index.kind or self._index.needs_retraining or self._index.needs_calibration:
            self._flush()
            if wanted != self._index.kind:
                logger.info(
                    "gallery of %d prototypes: %s -> %s index", self._index.ntotal, self._index.kind, wanted
                )
                self._index = self._index.converted(wanted, self._raw_k())
            elif self._index.needs_retraining:
                self._index = self._index.retrained(self._raw_k())
            else:
                self._index.calibrate(self._raw_k())
        if self._index.kind == "ivf":
            self._adapt_at = min(self._index.retrain_at, self._index.recalibrate_at)
        elif self.index_kind == "auto":
            self._adapt_at = max(self.approximate_threshold, _MIN_IVF - 1) + 1
        else:
            self._adapt_at = _MIN_IVF if self.index_kind == "ivf" else 1 << 62

    def _flush(self) -> None:
        """Add the staged vectors to the index in one batch."""
        if self._staged:
            labels = np.fromiter(self._staged.keys(), np.int64, len(self._staged))
            vectors = np.stack(list(self._staged.values()))
            self._staged.clear()
            self._index.add(vectors, labels)

    def _vectors(self, labels: list[int]) -> list[np.ndarray | None]:
        """The stored vector of each label, None where the index lacks it (a lost prototype)."""
        try:
            return list(self._index.reconstruct(labels))
        except RuntimeError:
            found: list[np.ndarray | None] = []
            for label in labels:
                try:
                    found.append(self._index.reconstruct([label])[0])
                except RuntimeError:
                    found.append(None)
            return found

    def _open_index(self) -> GalleryIndex:
        """The index as of the database now (see `gallery_file.open_index`)."""
        empty_kind = "hnsw" if self.index_kind == "hnsw" else "flat"
        if self.path is None:
            return GalleryIndex.empty(self.dim, empty_kind)
        opened = gallery_file.open_index(self._db, self.index_path, self.dim, empty_kind)
        self._next_seq, self._pending, self._lost = opened.next_seq, opened.pending, opened.lost
        return opened.index

    def _checkpoint(self) -> None:
        """Write the index file (see `gallery_file.checkpoint`)."""
        assert self.index_path is not None
        self._flush()
        self._write_seen()
        self._db.commit()
        gallery_file.checkpoint(self._db, self._index, self.index_path, self._next_seq - 1, self._lost)
        self._pending = 0
        self._changed = False
        self._checkpoints += 1
        self._lost = []


def _label_range(global_id: int) -> tuple[int, int]:
    """The first and last label one identity's prototypes can have."""
    return global_id << SLOT_BITS, global_id << SLOT_BITS | _SLOTS
