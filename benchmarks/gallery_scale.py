"""Gallery scale: the identity store (EmbeddingStore) from ten thousand to a million prototype features.

For each size, in a store in a temporary folder on disk: ingest through the public API (`new_identity`,
`add_prototype`, a `commit()` every 1,000 prototypes as a run commits every second, then `close()`,
which writes the index file); re-open it (open time); single-query searches for k=10 identities (p50 and
p95 latency); recall@10 of the identities returned against an exact brute-force search over the same
vectors (an identity scores its best prototype); bytes per prototype of all the store's files after close
(SQLite, its journal files, the index file).

The features are synthetic, shaped like re-ID features: they cluster by identity, and identities cluster
by appearance. Appearance groups ("looks": similar clothes, build, colours; one per 32 identities on
average, some far more common than others) are directions with a decaying spectrum; an identity's centre is
its look plus an equal random part (cosine 0.7 to the look, about 0.5 to another identity of the same
look); each identity holds 1 to 8 prototypes (as the store's `max_prototypes` allows), each its centre plus
noise, renormalised, so that two prototypes of one identity have cosine about 0.8. Queries are new noisy
samples of stored identities. The ranks 2-10 that recall@10 checks are then people who look alike, as
in a real gallery. `--data isotropic` draws identity centres uniformly on the sphere instead: every other
identity is then unrelated (cosine about 0 +- 0.05), ranks 2-10 are noise, and no index that scans only
part of the gallery can find them, so its recall measures the share scanned rather than the index.

    python benchmarks/gallery_scale.py --sizes 10000 100000 1000000
    python benchmarks/gallery_scale.py --sizes 100000 --data isotropic
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from pipeline.store import EmbeddingStore

logger = logging.getLogger("gallery_scale")

COMMIT_EVERY = 1_000
SAME_IDENTITY_NOISE = 0.5  # norm of the noise added to a unit centre: prototype pairs at cosine ~0.8
IDENTITIES_PER_LOOK = 32
LOOK_POPULARITY = 0.5  # look i is drawn with probability ~ (i + 1) ** -0.5
LOOK_SPECTRUM = 1.0  # the looks' variance along direction j ~ (j + 1) ** -1


@dataclass(frozen=True)
class Gallery:
    """Synthetic prototypes (n, dim) float32 of identities 0..m-1 (`identity` (n,), sorted), their centres."""

    vectors: np.ndarray
    identity: np.ndarray
    centres: np.ndarray


@dataclass(frozen=True)
class Result:
    """One size's measurements."""

    size: int
    ingest_per_s: float
    close_s: float
    open_s: float
    p50_ms: float
    p95_ms: float
    recall: float
    bytes_per_prototype: float
    approximate: bool


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _noise(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Random directions (n, dim) float32 of unit norm."""
    return _normalise(rng.standard_normal((n, dim), dtype=np.float32))


def synthetic_gallery(
    size: int, dim: int, rng: np.random.Generator, per_identity: int = 8, data: str = "looks"
) -> Gallery:
    """`size` prototypes of identities holding 1..per_identity each, clustered as the docstring says."""
    counts = rng.integers(1, per_identity + 1, size // max(1, (per_identity + 1) // 2) + per_identity)
    counts = counts[: int(np.searchsorted(np.cumsum(counts), size)) + 1]
    counts[-1] -= int(counts.sum()) - size
    identities = len(counts)
    if data == "isotropic":
        centres = _noise(rng, identities, dim)
    elif data == "looks":
        looks = max(1, identities // IDENTITIES_PER_LOOK)
        spectrum = (1.0 + np.arange(dim, dtype=np.float32)) ** (-LOOK_SPECTRUM / 2)
        spectrum = rng.permutation(spectrum)
        look_centres = _normalise(rng.standard_normal((looks, dim), dtype=np.float32) * spectrum)
        popularity = (1.0 + np.arange(looks)) ** -LOOK_POPULARITY
        look = rng.choice(looks, identities, p=popularity / popularity.sum())
        centres = _normalise(look_centres[look] + _noise(rng, identities, dim))
    else:
        raise ValueError(f"data must be looks or isotropic, but got {data!r}")
    identity = np.repeat(np.arange(identities), counts)
    vectors = np.empty((size, dim), np.float32)
    for start in range(0, size, 65_536):
        part = identity[start : start + 65_536]
        vectors[start : start + len(part)] = _normalise(
            centres[part] + SAME_IDENTITY_NOISE * _noise(rng, len(part), dim)
        )
    return Gallery(vectors, identity, centres.astype(np.float32))


def queries_of(gallery: Gallery, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` new noisy samples (count, dim) of stored identities, and those identities (count,)."""
    picked = rng.integers(0, len(gallery.centres), count)
    dim = gallery.vectors.shape[1]
    return _normalise(gallery.centres[picked] + SAME_IDENTITY_NOISE * _noise(rng, count, dim)), picked


def exact_top_identities(gallery: Gallery, queries: np.ndarray, k: int, per_identity: int) -> list[list[int]]:
    """The k identities with the best prototype similarity to each query, by brute force."""
    _, nearest = faiss.knn(queries, gallery.vectors, k * per_identity + 1, metric=faiss.METRIC_INNER_PRODUCT)
    found = []
    for row in gallery.identity[nearest]:
        ids = list(dict.fromkeys(row.tolist()))[:k]  # distinct identities in order of their best prototype
        found.append(ids)
    return found


def ingest(store: EmbeddingStore, gallery: Gallery) -> list[int]:
    """Add every prototype through the public API, committing every COMMIT_EVERY; returns the global ids."""
    gids: list[int] = []
    session = store.begin_session()
    previous = -1
    for i, (who, vector) in enumerate(zip(gallery.identity.tolist(), gallery.vectors, strict=True)):
        if who != previous:
            gids.append(store.new_identity(time.time()))
            previous = who
        store.add_prototype(gids[-1], vector, (session, "cam", i))
        if (i + 1) % COMMIT_EVERY == 0:
            store.commit()
        if (i + 1) % 100_000 == 0:
            logger.info("  %d prototypes in", i + 1)
    store.commit()
    return gids


def measure(
    gallery: Gallery,
    folder: Path,
    *,
    queries: int = 1_000,
    k: int = 10,
    per_identity: int = 8,
    index: str = "auto",
    threshold: int = 50_000,
    seed: int = 1,
) -> Result:
    """Ingest `gallery` into a store in `folder`, re-open it and measure it (see the module docstring)."""
    size, dim = gallery.vectors.shape
    path = folder / "gallery.sqlite"
    options = {"dim": dim, "index": index, "approximate_threshold": threshold, "max_prototypes": per_identity}
    began = time.perf_counter()
    store = EmbeddingStore(path, **options)
    gids = np.array(ingest(store, gallery))
    ingest_s = time.perf_counter() - began
    began = time.perf_counter()
    store.close()
    close_s = time.perf_counter() - began
    stored = sum(p.stat().st_size for p in EmbeddingStore.files(path))
    began = time.perf_counter()
    store = EmbeddingStore(path, **options)
    open_s = time.perf_counter() - began
    try:
        rng = np.random.default_rng(seed)
        asked, _ = queries_of(gallery, queries, rng)
        for query in asked[:20]:  # warm-up: first touches of the index pages
            store.search(query[None], k)
        latencies, hits = [], []
        for query in asked:
            start = time.perf_counter()
            hits.append(store.search(query[None], k)[0])
            latencies.append(time.perf_counter() - start)
        approximate = store.approximate
    finally:
        store.close()
    exact = exact_top_identities(gallery, asked, k, per_identity)
    recall = float(
        np.mean([len(set(h) & set(gids[e].tolist())) / len(e) for h, e in zip(hits, exact, strict=True)])
    )
    return Result(
        size=size,
        ingest_per_s=size / ingest_s,
        close_s=close_s,
        open_s=open_s,
        p50_ms=1e3 * float(np.percentile(latencies, 50)),
        p95_ms=1e3 * float(np.percentile(latencies, 95)),
        recall=recall,
        bytes_per_prototype=stored / size,
        approximate=approximate,
    )


def table(results: list[Result]) -> str:
    """The results as a plain-text table, one size a row."""
    head = (
        f"{'prototypes':>10}  {'index':>6}  {'ingest/s':>8}  {'close s':>7}  {'open s':>6}  "
        f"{'p50 ms':>6}  {'p95 ms':>6}  {'recall@10':>9}  {'B/proto':>7}"
    )
    rows = [
        f"{r.size:>10,}  {'approx' if r.approximate else 'exact':>6}  {r.ingest_per_s:>8,.0f}  {r.close_s:>7.2f}  "
        f"{r.open_s:>6.2f}  {r.p50_ms:>6.2f}  {r.p95_ms:>6.2f}  {r.recall:>9.3f}  {r.bytes_per_prototype:>7.0f}"
        for r in results
    ]
    return "\n".join([head, *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="prototypes per run")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1_000, help="single-query searches per size")
    parser.add_argument("--data", choices=["looks", "isotropic"], default="looks")
    parser.add_argument("--index", choices=["auto", "flat", "ivf", "hnsw"], default="auto")
    parser.add_argument("--threshold", type=int, default=50_000, help="the store's approximate_threshold")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", type=Path, help="where the stores go (default: a temporary folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logger.info(
        "faiss %s, %d threads; data: %s, dim %d",
        faiss.__version__,
        faiss.omp_get_max_threads(),
        args.data,
        args.dim,
    )
    results = []
    for size in args.sizes:
        rng = np.random.default_rng(args.seed)
        gallery = synthetic_gallery(size, args.dim, rng, data=args.data)
        logger.info("%d prototypes of %d identities", size, len(gallery.centres))
        folder = Path(tempfile.mkdtemp(prefix="gallery_scale_", dir=args.folder))
        try:
            results.append(
                measure(
                    gallery,
                    folder,
                    queries=args.queries,
                    index=args.index,
                    threshold=args.threshold,
                    seed=args.seed + 1,
                )
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        del gallery
        print(table(results[-1:]) if len(results) == 1 else table(results).splitlines()[-1], flush=True)
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
