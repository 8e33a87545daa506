"""GalleryIndex: the faiss side of the gallery, labelled unit vectors searched by inner product.

Three kinds: `flat` (exact: an IVF index with one list holding float32 vectors), `ivf` (8-bit scalar
quantised codes, 512 bytes a vector at dim 512, in inverted lists trained on the gallery itself) and
`hnsw` (a graph over float32 vectors). Flat and ivf remove vectors in place through a hash table from
label to list position; hnsw cannot remove, so removed labels are masked until a rebuild.

A label is `global_id << SLOT_BITS | slot`, so a search hit names its identity without a lookup. The
index is saved as faiss's own file format, written under a temporary name, synced and renamed into place;
the CRC-32 of its bytes is returned so that the caller can record which file it wrote.
"""

from __future__ import annotations

import logging
import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

logger = logging.getLogger(__name__)

SLOT_BITS = 20  # prototypes an identity may hold at once: 2**20
KINDS = ("flat", "ivf", "hnsw")
RECALL_TARGET = 0.98  # identity-level recall@10 of ivf against exhaustive search over the same codes
_HNSW_M = 32
_TOMBSTONE_FRACTION = 0.2  # an HNSW index cannot remove vectors: rebuild once this share is dead
_TRAIN_POINTS_PER_LIST = 32  # k-means sample: enough for the lists' centres, cheap enough at 1M
_SQ_RANGE_SIGMAS = 6.0  # each dimension's 8-bit range spans at least mean ± 6 std of the training vectors
_CALIBRATION_QUERIES = 128
_RECALIBRATE_GROWTH = 1.5  # choose nprobe again once the index has grown or shrunk by this factor
_CHUNK = 65_536
_READ_BLOCK = 1 << 24


def identities_of(labels: np.ndarray) -> np.ndarray:
    """The global id of each label (int64 array of any shape); -1 stays -1."""
    labels = np.asarray(labels, np.int64)
    return np.where(labels < 0, -1, labels >> SLOT_BITS)


def nlist_for(count: int) -> int:
    """Inverted lists for a gallery of `count` vectors: the power of two nearest 2·sqrt(count), with at
    least 16 vectors a list."""
    lists = 2 ** math.floor(math.log2(2.0 * math.sqrt(max(count, 1))) + 0.5)
    most = 2 ** math.floor(math.log2(max(count // 16, 1)))
    return int(min(lists, most))


@dataclass(frozen=True)
class IndexFile:
    """What identifies one written index file: its CRC-32, its size in bytes and the vectors it holds."""

    crc: int
    size: int
    count: int


class GalleryIndex:
    """Labelled unit vectors of one dimension, searched by inner product; see the module docstring."""

    def __init__(self, index: faiss.Index, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, but got {kind!r}")
        self.index = index
        self.kind = kind
        self.dim = index.d
        self._dead: set[int] = set()  # hnsw only: removed labels still inside the graph
        self.calibrated_at = self.ntotal  # ivf: the size nprobe was chosen at (or loaded at)

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def empty(cls, dim: int, kind: str = "flat") -> GalleryIndex:
        """An empty flat or hnsw index (an ivf index needs vectors to train on: see `build`)."""
        if kind == "flat":
            quantizer = faiss.IndexFlatIP(dim)
            quantizer.add(np.zeros((1, dim), np.float32))  # one list: every query scans all vectors
            index = faiss.IndexIVFFlat(quantizer, dim, 1, faiss.METRIC_INNER_PRODUCT)
            index.own_fields = True
            quantizer.this.disown()
            index.set_direct_map_type(faiss.DirectMap.Hashtable)
            return cls(index, "flat")
        if kind == "hnsw":
            graph = faiss.IndexHNSWFlat(dim, _HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index = faiss.IndexIDMap2(graph)
            index.own_fields = True
            graph.this.disown()
            return cls(index, "hnsw")
        raise ValueError(f"an empty index is flat or hnsw, not {kind!r}")

    @classmethod
    def build(
        cls, kind: str, dim: int, chunks: Iterator[tuple[np.ndarray, np.ndarray]], raw_k: int
    ) -> GalleryIndex:
        """An index of `kind` holding the (vectors (n, dim) float32, labels (n,) int64) of `chunks`."""
        if kind != "ivf":
            built = cls.empty(dim, kind)
            for vectors, labels in chunks:
                built.add(vectors, labels)
            return built
        parts = list(chunks)
        vectors = np.concatenate([v for v, _ in parts]) if parts else np.zeros((0, dim), np.float32)
        labels = np.concatenate([lab for _, lab in parts]) if parts else np.zeros(0, np.int64)
        del parts
        index = _ivf_trained(dim, vectors, nlist_for(len(vectors)))
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        for start in range(0, len(vectors), _CHUNK):
            index.add_with_ids(vectors[start : start + _CHUNK], labels[start : start + _CHUNK])
        built = cls(index, "ivf")
        built.calibrate(raw_k)
        return built

    def converted(self, kind: str, raw_k: int) -> GalleryIndex:
        """The same labelled vectors in an index of another kind (ivf codes decode to their centres)."""
        return GalleryIndex.build(kind, self.dim, self.contents(), raw_k)

    @property
    def retrain_at(self) -> int | None:
        """The size at which an ivf index has outgrown its lists (about 4 times the size they were trained
        for): the smallest count for which `nlist_for` gives twice as many. None for other kinds."""
        if self.kind != "ivf":
            return None
        low, high = 1, 1 << 62
        while low < high:
            middle = (low + high) // 2
            low, high = (middle + 1, high) if nlist_for(middle) < 2 * self.index.nlist else (low, middle)
        return low

    @property
    def recalibrate_at(self) -> int | None:
        """The size at which an ivf index chooses nprobe again (its neighbourhoods have filled in)."""
        return None if self.kind != "ivf" else math.ceil(self.calibrated_at * _RECALIBRATE_GROWTH)

    @property
    def needs_calibration(self) -> bool:
        """True for an ivf index whose size has moved by a factor _RECALIBRATE_GROWTH since calibration."""
        return self.kind == "ivf" and not (
            self.calibrated_at / _RECALIBRATE_GROWTH < self.ntotal < self.recalibrate_at
        )

    @property
    def needs_retraining(self) -> bool:
        """True for an ivf index that has outgrown its lists."""
        return self.kind == "ivf" and self.ntotal >= self.retrain_at

    def retrained(self, raw_k: int) -> GalleryIndex:
        """An ivf index with lists for its present size; the codes move over as they are, not re-encoded."""
        assert self.kind == "ivf", self.kind
        old = self.index
        nlist = nlist_for(old.ntotal)
        logger.info("gallery index: %d vectors, retraining %d -> %d lists", old.ntotal, old.nlist, nlist)
        rng = np.random.default_rng(0)
        sample = self._sample(rng, _TRAIN_POINTS_PER_LIST * nlist)
        index = _ivf_trained(self.dim, sample, nlist)
        faiss.copy_array_to_vector(faiss.vector_to_array(old.sq.trained), index.sq.trained)
        for list_no in range(old.nlist):
            ids, codes = _list_entries(old.invlists, list_no)
            for start in range(0, len(ids), _CHUNK):
                part_ids, part_codes = ids[start : start + _CHUNK], codes[start : start + _CHUNK]
                _, assign = index.quantizer.search(old.sq.decode(part_codes), 1)
                order = np.argsort(assign[:, 0], kind="stable")
                lists, starts = np.unique(assign[order, 0], return_index=True)
                for target, group in zip(lists, np.split(order, starts[1:]), strict=True):
                    group_ids = np.ascontiguousarray(part_ids[group])
                    group_codes = np.ascontiguousarray(part_codes[group])
                    index.invlists.add_entries(
                        int(target), len(group), faiss.swig_ptr(group_ids), faiss.swig_ptr(group_codes)
                    )
        index.ntotal = old.ntotal
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # built from the filled lists
        built = GalleryIndex(index, "ivf")
        built.calibrate(raw_k)
        return built

    def calibrate(self, raw_k: int, k: int = 10) -> int:
        """Set an ivf index's nprobe to the fewest lists that find RECALL_TARGET of the top-k identities.

        Queries are stored vectors (their own label left out); the reference is a search of every list.
        """
        if self.kind != "ivf":
            return 0
        index = self.index
        rng = np.random.default_rng(1)
        queries = self._sample(rng, _CALIBRATION_QUERIES)
        raw_k = min(raw_k + 1, index.ntotal)
        index.nprobe = index.nlist
        exhaustive = self.search(queries, raw_k)[1]
        own = exhaustive[:, 0]  # each query finds itself first: leave that label out
        reference = [_top_identities(row, own[i], k) for i, row in enumerate(exhaustive)]
        chosen = index.nlist
        nprobe = 1
        while nprobe < index.nlist:
            index.nprobe = nprobe
            found = self.search(queries, raw_k)[1]
            hits = sum(
                len(set(_top_identities(row, own[i], k)) & set(reference[i])) for i, row in enumerate(found)
            )
            if hits >= RECALL_TARGET * max(sum(len(r) for r in reference), 1):
                chosen = nprobe
                break
            nprobe *= 2
        index.nprobe = chosen
        self.calibrated_at = self.ntotal
        logger.info("gallery index: %d vectors in %d lists, nprobe %d", index.ntotal, index.nlist, chosen)
        return chosen

    # -- vectors -----------------------------------------------------------------------------------

    @property
    def ntotal(self) -> int:
        """The number of live vectors."""
        return int(self.index.ntotal) - len(self._dead)

    def add(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        """Add unit vectors (n, dim) float32 under int64 labels that are not in the index."""
        if len(labels) == 0:
            return
        labels = np.ascontiguousarray(labels, np.int64)
        if self._dead and not self._dead.isdisjoint(labels.tolist()):
            self._rebuild_hnsw()  # a masked vector under the same label must go before the new one
        self.index.add_with_ids(np.ascontiguousarray(vectors, np.float32), labels)

    def remove(self, labels: np.ndarray | list[int]) -> None:
        """Remove the vectors of `labels` (labels not in the index are ignored)."""
        labels = np.ascontiguousarray(labels, np.int64)
        if len(labels) == 0:
            return
        if self.kind != "hnsw":
            self.index.remove_ids(faiss.IDSelectorArray(labels))
            return
        self._dead.update(label for label in labels.tolist() if self._holds(label))
        if len(self._dead) > _TOMBSTONE_FRACTION * max(self.index.ntotal, 1):
            self._rebuild_hnsw()

    def search(self, queries: np.ndarray, raw_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Inner products (nq, raw_k) float32 and labels (nq, raw_k) int64 of the nearest vectors; -1: none."""
        queries = np.ascontiguousarray(queries, np.float32)
        wanted = raw_k
        raw_k = min(raw_k + len(self._dead), int(self.index.ntotal))
        if raw_k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if self.kind == "hnsw":
            faiss.downcast_index(self.index.index).hnsw.efSearch = max(64, raw_k)
        sims, labels = self.index.search(queries, raw_k)
        if self._dead:
            dead = np.isin(labels, np.fromiter(self._dead, np.int64, len(self._dead)))
            labels = np.where(dead, -1, labels)
            order = np.argsort(dead, axis=1, kind="stable")  # live hits first, in their order
            sims, labels = np.take_along_axis(sims, order, 1), np.take_along_axis(labels, order, 1)
        return sims[:, :wanted], labels[:, :wanted]

    def reconstruct(self, labels: np.ndarray | list[int]) -> np.ndarray:
        """The stored vectors (n, dim) float32 of `labels` (ivf: decoded 8-bit codes)."""
        labels = np.ascontiguousarray(labels, np.int64)
        if len(labels) == 0:
            return np.zeros((0, self.dim), np.float32)
        return np.asarray(self.index.reconstruct_batch(labels), np.float32).reshape(len(labels), self.dim)

    def labels(self) -> np.ndarray:
        """Every live label, int64, in no particular order."""
        if self.kind == "hnsw":
            found = faiss.vector_to_array(self.index.id_map)
            return np.setdiff1d(found, np.fromiter(self._dead, np.int64, len(self._dead)), assume_unique=True)
        invlists = self.index.invlists
        parts = [_list_entries(invlists, i, codes=False)[0] for i in range(self.index.nlist)]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def is_dead(self, label: int) -> bool:
        """True for a removed label still masked inside an hnsw graph (it cannot be added again yet)."""
        return label in self._dead

    def contents(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every live (vectors (n, dim) float32, labels (n,) int64), in chunks."""
        if self.kind == "hnsw":
            inner = faiss.downcast_index(self.index.index)
            total = int(inner.ntotal)
            storage = faiss.downcast_index(inner.storage)
            vectors = faiss.rev_swig_ptr(storage.get_xb(), total * self.dim).reshape(total, self.dim)
            labels = faiss.vector_to_array(self.index.id_map)
            live = ~np.isin(labels, np.fromiter(self._dead, np.int64, len(self._dead)))
            for start in range(0, total, _CHUNK):
                keep = live[start : start + _CHUNK]
                yield vectors[start : start + _CHUNK][keep].copy(), labels[start : start + _CHUNK][keep]
            return
        invlists = self.index.invlists
        for list_no in range(self.index.nlist):
            ids, codes = _list_entries(invlists, list_no)
            for start in range(0, len(ids), _CHUNK):
                yield self._decode(codes[start : start + _CHUNK]), ids[start : start + _CHUNK]

    def compact(self) -> None:
        """Drop masked vectors for good (an hnsw graph is rebuilt without them)."""
        if self._dead:
            self._rebuild_hnsw()

    # -- files -------------------------------------------------------------------------------------

    def save(self, path: Path) -> IndexFile:
        """Write the index to `path`'s temporary name (`path.tmp`), synced; `install` renames it into place."""
        self.compact()
        crc, size = 0, 0
        tmp = _tmp_path(path)
        with open(tmp, "wb") as f:

            def write(block: bytes) -> int:
                nonlocal crc, size
                crc = zlib.crc32(block, crc)
                size += len(block)
                f.write(block)
                return len(block)

            faiss.write_index(self.index, faiss.PyCallbackIOWriter(write))
            f.flush()
            os.fsync(f.fileno())
        return IndexFile(crc, size, self.ntotal)

    @staticmethod
    def install(path: Path) -> None:
        """Rename the file `save` wrote into place and sync the folder, so the rename survives a crash."""
        os.replace(_tmp_path(path), path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @classmethod
    def load(cls, path: Path, accepted: dict[int, object], dim: int) -> tuple[GalleryIndex, object] | None:
        """The index at `path` if its CRC-32 is a key of `accepted`, with that key's value; else None.

        The checksum is taken over the bytes that are then parsed, from one open file, so a file renamed
        into place meanwhile cannot be mistaken for the one checked.
        """
        try:
            with open(path, "rb") as f:
                crc = 0
                while block := f.read(_READ_BLOCK):
                    crc = zlib.crc32(block, crc)
                if crc not in accepted:
                    return None
                f.seek(0)
                index = faiss.read_index(faiss.PyCallbackIOReader(f.read, _READ_BLOCK))
        except (OSError, RuntimeError, MemoryError) as e:
            logger.warning("gallery index %s unreadable: %s", path, e)
            return None
        if index.d != dim:
            return None
        if isinstance(index, faiss.IndexIVFScalarQuantizer):
            kind = "ivf"
        elif isinstance(index, faiss.IndexIVFFlat):
            kind = "flat"
        elif isinstance(index, faiss.IndexIDMap2):
            kind = "hnsw"
        else:
            return None
        return cls(index, kind), accepted[crc]

    # -- internals ---------------------------------------------------------------------------------

    def _holds(self, label: int) -> bool:
        try:
            self.index.reconstruct(label)
        except RuntimeError:
            return False
        return label not in self._dead

    def _rebuild_hnsw(self) -> None:
        fresh = GalleryIndex.empty(self.dim, "hnsw")
        for vectors, labels in self.contents():
            fresh.index.add_with_ids(vectors, labels)
        self.index, self._dead = fresh.index, set()

    def _sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """Up to `count` stored vectors drawn at random, float32 (decoded for ivf)."""
        if self.kind == "hnsw":
            vectors = np.concatenate([v for v, _ in self.contents()] or [np.zeros((0, self.dim), np.float32)])
            return vectors[np.sort(rng.choice(len(vectors), min(count, len(vectors)), replace=False))]
        invlists = self.index.invlists
        sizes = np.array([invlists.list_size(i) for i in range(self.index.nlist)], np.int64)
        ends = np.cumsum(sizes)
        take = np.sort(rng.choice(int(ends[-1]), min(count, int(ends[-1])), replace=False))
        lists = np.searchsorted(ends, take, side="right")
        picked = [np.zeros((0, self.dim), np.float32)]
        for list_no in np.unique(lists).tolist():
            _, codes = _list_entries(invlists, list_no)
            picked.append(self._decode(codes[take[lists == list_no] - (ends[list_no] - sizes[list_no])]))
        return np.concatenate(picked)

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        """Vectors (n, dim) float32 from the codes of an inverted list."""
        if self.kind == "flat":
            return codes.view(np.float32).reshape(-1, self.dim).copy()
        return self.index.sq.decode(codes)


def _ivf_trained(dim: int, vectors: np.ndarray, nlist: int) -> faiss.IndexIVFScalarQuantizer:
    """An empty ivf index whose lists and 8-bit quantiser are trained on (a sample of) `vectors`."""
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT, False
    )
    index.own_fields = True
    quantizer.this.disown()
    index.cp.niter = 10
    index.cp.max_points_per_centroid = _TRAIN_POINTS_PER_LIST
    index.cp.min_points_per_centroid = 1
    rng = np.random.default_rng(2)
    sample = vectors
    if len(vectors) > _TRAIN_POINTS_PER_LIST * nlist:
        sample = vectors[np.sort(rng.choice(len(vectors), _TRAIN_POINTS_PER_LIST * nlist, replace=False))]
    sample = np.ascontiguousarray(sample, np.float32)
    index.train(sample)
    # The codes keep this range for the index's life (retraining moves codes, it does not re-encode
    # them), so it must not be just what the first vectors spanned: later ones would be clipped.
    mean, std = sample.mean(0), sample.std(0)
    low = np.minimum(sample.min(0), mean - _SQ_RANGE_SIGMAS * std)
    high = np.maximum(sample.max(0), mean + _SQ_RANGE_SIGMAS * std)
    faiss.copy_array_to_vector(np.concatenate([low, high - low]).astype(np.float32), index.sq.trained)
    return index


def _list_entries(invlists, list_no: int, codes: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Copies of one inverted list's labels (n,) int64 and codes (n, code_size) uint8."""
    size = invlists.list_size(list_no)
    if size == 0:
        return np.zeros(0, np.int64), np.zeros((0, invlists.code_size), np.uint8) if codes else None
    ids = faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy()
    if not codes:
        return ids, None
    raw = faiss.rev_swig_ptr(invlists.get_codes(list_no), size * invlists.code_size)
    return ids, raw.copy().reshape(size, invlists.code_size)


def _top_identities(labels: np.ndarray, own: int, k: int) -> list[int]:
    """The first `k` distinct identities of a row of labels, skipping `own` and empty (-1) slots."""
    found: list[int] = []
    for label in labels.tolist():
        if label < 0 or label == own:
            continue
        gid = label >> SLOT_BITS
        if gid not in found:
            found.append(gid)
            if len(found) == k:
                break
    return found


def _tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")
