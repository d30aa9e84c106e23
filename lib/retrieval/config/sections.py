"""The config's sections: one dataclass each, every field with its default and a trailing comment, and
the checks a type alone cannot express in the section's own ``validate()``, next to its fields.

Choices are ``Literal[...]`` (the loader checks them), components chosen by name carry their
arguments (``ranker.losses: [{name: neural_ndcg, args: {k: 10}}]``), and the runtime of every
training stage is one section, ``training``, that a stage may override in its own ``training:``
mapping (``visual.training.num_processes``); :func:`runtime` resolves it, the same way for all.
Renamed keys keep working for one release: ``Config.DEPRECATED`` says where each went.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from retrieval import tables
from retrieval.config.loader import ConfigError
from retrieval.visual.images import MAX_PIXELS

Feed = Literal["arrow", "petastorm"]
RankingLoss = Literal["ndcg_loss2pp", "neural_ndcg", "listnet", "ranknet"]  # = ranking.losses.LOSSES (tested)
TripletMining = Literal["batch_all", "batch_hard", "batch_hard_soft", "semi_hard"]  # = visual.losses.LOSSES
VisualVariant = Literal[
    "shop_only", "street", "seamless", "blur", "natural_bg", "uniform_bg"
]  # = visual.train.VARIANTS


def _unit(section: str, **values: float) -> None:
    for name, v in values.items():
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"{section}.{name} must be in [0, 1]; got {v}")


def _positive(section: str, **values: float) -> None:
    for name, v in values.items():
        if not v >= 1:  # NaN too
            raise ConfigError(f"{section}.{name} must be >= 1; got {v}")


@dataclass
class PathsSection:
    root: str = "work"  # every table, model, metric and report of a run lives under this path or URI
    results: str = "benchmarks/results"  # where the real-data benchmarks (eval_sessions, eval_ltr, evaluate_visual) write <name>.json
    lock_stale_seconds: float = 300.0  # the root's one-writer lock is taken over when its heartbeat is older

    def validate(self) -> None:
        from retrieval import storage

        for key, value in (("paths.root", self.root), ("paths.results", self.results)):
            if not value:
                raise ConfigError(f"{key} must not be empty")
            if storage.is_local(value):
                try:
                    storage.local_path(value)
                except ValueError as e:
                    raise ConfigError(f"{key}: {e}") from None
        if not self.lock_stale_seconds >= 10:
            raise ConfigError(f"paths.lock_stale_seconds must be at least 10, got {self.lock_stale_seconds}")


@dataclass
class SparkSection:
    master: str = "local[*]"  # local[*], spark://host:7077, yarn, k8s://https://host:443
    deploy_mode: Literal["client", "cluster"] = "client"
    app_name: str = "retrieval"  # prefix of the Spark application name (the stage is appended)
    driver_memory: str = "4g"  # spark.driver.memory (only honoured before the JVM starts)
    executor_memory: str = ""  # spark.executor.memory; empty = Spark's default
    executor_cores: int = 0  # spark.executor.cores; 0 = Spark's default
    num_executors: int = 0  # spark.executor.instances (YARN/k8s); 0 = Spark's default
    shuffle_partitions: int = 0  # spark.sql.shuffle.partitions; 0 = 2 x the local cores (local masters only)
    local_dir: str = ""  # scratch space of local masters (SPARK_LOCAL_DIRS); empty = ./work/.spark-local
    executor_gpus: float = 0.0  # spark.executor.resource.gpu.amount; 0 = no GPU scheduling
    task_gpus: float = (
        0.0  # spark.task.resource.gpu.amount (e.g. 1 for training, 0.25 to share for inference)
    )
    gpu_discovery_script: str = ""  # spark.executor.resource.gpu.discoveryScript (path on the nodes)
    python_env: str = ""  # a venv-pack archive (scripts/pack_env.sh) the executors unpack and run; "" = none
    conf: dict[str, str] = field(default_factory=dict)  # any other spark.* settings, passed as --conf k=v


@dataclass
class SynthSection:
    """The embedded synthetic marketplace (see retrieval.synth)."""

    products: int = 20000  # distinct products (catalogue cards)
    products_per_cluster: int = 6  # products per cluster of close substitutes (brand + model line)
    # exponent of product popularity by rank, and the mean actions per session: calibrated against a real
    # click log (Diginetica, benchmarks/calibration.py; README, The embedded synthetic marketplace): 1.1
    # and 8 before put 32% of clicks on the 20 most clicked items (real logs: 1-2%) in sessions twice as long
    zipf_a: float = 0.5
    offers_per_product_a: float = 1.9  # Zipf exponent of the number of offers (sellers) per product
    max_offers_per_product: int = 40  # cap on offers per product
    sellers: int = 2000  # distinct sellers; seller popularity is Zipf too
    product_id_missing: float = 0.15  # share of offers whose product_id is null in the offers table
    sessions: int = 40000  # sessions in the event log
    mean_session_steps: float = 4.0  # mean number of actions (view or search) per session
    max_session_steps: int = 120  # cap on actions per session (a real session, not a bot)
    search_prob: float = 0.3  # probability that an action is a search (else a product view)
    # Behaviour that no feature shows (retrieval.synth.catalog), each with a strength (0 turns it off),
    # fixed from stated targets before any model was trained on them (README, The embedded synthetic
    # marketplace; benchmarks/behaviour.py): content alone explains 3/4 of what is predictable
    latent_dim: int = 8  # taste factors per product
    # moves to a substitute or complement weigh popularity x exp(this x affinity), and listed products'
    # clicks exp(this x affinity - this^2/2): at 2.5 the content oracle reaches 0.754 of the full one
    latent_strength: float = 2.5
    link_share: float = 0.5  # share of complement moves to the one product of that leaf the current one fits
    # spread g of seller quality q ~ N(0, 1): traffic, clicks and purchases x exp(g q - g^2/2); at 0.5 a
    # top-decile seller draws 1.9x the traffic of a median one
    seller_quality: float = 0.5
    listing_min: int = 30  # shortest listing shown for a search
    listing_max: int = 300  # longest listing (lengths are log-uniform between min and max)
    examination_eta: float = 0.9  # examination probability at position p is p^-eta (position-based model)
    production_noise: float = 0.8  # std of the noise in the logged production ranker's score
    days: int = 14  # days covered by the log
    start_date: str = "2026-10-01"  # first day of the log (UTC)
    bad_row_rate: float = 0.002  # rows injected per clean row, for each kind of bad input (0 = clean data)
    offers_per_task: int = 5000  # products generated by one Spark task (sets the catalogue's parallelism)
    sessions_per_task: int = 2000  # sessions generated by one Spark task (sets the log's parallelism)

    def validate(self) -> None:
        if self.products < self.products_per_cluster or self.products_per_cluster < 1:
            raise ConfigError(
                f"synth.products ({self.products}) must be >= synth.products_per_cluster "
                f"({self.products_per_cluster}) >= 1"
            )
        if not 1 <= self.listing_min <= self.listing_max:
            raise ConfigError(
                f"need 1 <= synth.listing_min <= synth.listing_max; got {self.listing_min}, {self.listing_max}"
            )
        _unit(
            "synth",
            product_id_missing=self.product_id_missing,
            search_prob=self.search_prob,
            bad_row_rate=self.bad_row_rate,
        )
        _unit("synth", link_share=self.link_share)
        _positive("synth", latent_dim=self.latent_dim)
        if not (self.latent_strength >= 0 and self.seller_quality >= 0):  # NaN too
            raise ConfigError(
                f"synth.latent_strength and synth.seller_quality must be >= 0; got "
                f"{self.latent_strength}, {self.seller_quality}"
            )
        if self.zipf_a <= 0 or self.offers_per_product_a <= 1:
            raise ConfigError("synth.zipf_a must be > 0 and synth.offers_per_product_a > 1")


@dataclass
class IngestSection:
    # a user's raw offers and events (a file, a directory or a glob; any storage URI), read in place of
    # <root>/raw/offers and <root>/raw/events; empty = those tables (what generate writes)
    offers: str = ""
    events: str = ""
    format: Literal["auto", "parquet", "csv", "jsonl"] = "auto"  # how to read them; auto = by the extension
    max_session_events: int = 1000  # a session with more events than this is a bot
    max_events_per_minute: float = 60.0  # ... or one faster than this on average
    min_events_for_rate: int = 30  # the rate rule applies only to sessions with at least this many events
    events_partitions: int = 0  # partitions of the events table; 0 = spark.sql.shuffle.partitions
    max_listing: int = 1000  # a search showing more offers than this is quarantined (bad_listing)
    max_text_chars: int = 2000  # a query text or an offer title longer than this is quarantined (bad_text)
    # an event more than this many days from the log's busiest day is quarantined (ts_out_of_range), so a
    # clock that says 2099 cannot move the test split; the bound comes from the log, not the wall clock
    ts_spread_days: int = 400  # 0 = no bound

    def validate(self) -> None:
        _positive(
            "ingest",
            max_session_events=self.max_session_events,
            min_events_for_rate=self.min_events_for_rate,
            max_listing=self.max_listing,
            max_text_chars=self.max_text_chars,
        )
        if not self.max_events_per_minute > 0 or math.isinf(self.max_events_per_minute):
            raise ConfigError(
                f"ingest.max_events_per_minute must be a positive number; got {self.max_events_per_minute}"
            )
        if self.events_partitions < 0 or self.ts_spread_days < 0:
            raise ConfigError("ingest.events_partitions and ingest.ts_spread_days must be >= 0")


@dataclass
class SplitSection:
    test_days: int = 3  # sessions starting in the last N days of the log are the test split
    test_start: str = ""  # or an explicit first test day (YYYY-MM-DD, UTC); empty = derived from the log

    def validate(self) -> None:
        if self.test_days < 1 and not self.test_start:
            raise ConfigError("split.test_days must be >= 1 (or set split.test_start)")


@dataclass
class PairsSection:
    window: int = 5  # an interaction pairs with the next `window` interactions of its session
    max_session_events: int = 200  # only a session's first N interactions count (bounds the work per session)
    min_support: int = 2  # a training pair needs this many sessions (test pairs keep support 1)
    event_weights: dict[str, float] = field(
        default_factory=lambda: {"view": 1.0, "click": 1.0, "cart": 2.0, "purchase": 3.0}
    )  # interactions that form pairs, and their weight; a pair weighs the mean of its two ends

    def validate(self) -> None:
        _positive("pairs", window=self.window, min_support=self.min_support)
        if not self.event_weights:
            raise ConfigError("pairs.event_weights must name at least one event type")


@dataclass
class ListingsSection:
    propensity_positions: int = 50  # examination is estimated for positions 1..N (a power law beyond)
    propensity_iterations: int = 60  # EM iterations of the position-based click model
    # (query, offer, position) cells the EM fits on the driver, a hash sample above it: what reaches the
    # driver is ~64 bytes a cell as Arrow (200k cells: 12 MB); the fit's error was the same at 100k as at 1.4M
    propensity_max_rows: int = 200_000
    prior_folds: int = 5  # training rows' priors count the other folds only (out-of-fold, no label leak)
    prior_smoothing: float = 20.0  # pseudo-impressions of the global rate in the CTR / purchase-rate priors
    bm25_k1: float = 1.2  # BM25 term-frequency saturation
    bm25_b: float = 0.75  # BM25 length normalisation
    # Training listings are thinned below the top (their rows cost the most and tell the least): every
    # clicked row and the top keep_top positions stay, of the other unclicked rows negative_rate (with
    # weight 1 / negative_rate). Test listings stay whole (every method is scored on the whole list).
    # 0.2 on the embedded default: 2.4x fewer rows (4.8M of 11.2M), mine_listings 237 -> 134 s, the
    # ranker 528 -> 230 s; nDCG@10 against true grades up (xgb 0.8685 -> 0.8779, DNNs 0.8817 -> 0.8878
    # and 0.8815 -> 0.8939), against logged clicks down 0.01-0.02 (README, "Learning to rank")
    negative_rate: float = 0.2  # 1 = every row shown
    keep_top: int = 10

    def validate(self) -> None:
        if self.prior_folds < 2:
            raise ConfigError(f"listings.prior_folds must be >= 2; got {self.prior_folds}")
        if not 1000 <= self.propensity_max_rows <= 20_000_000:
            raise ConfigError(
                f"listings.propensity_max_rows bounds what the driver holds: 1,000 .. 20,000,000; got {self.propensity_max_rows}"
            )
        if not 0.0 < self.negative_rate <= 1.0 or self.keep_top < 0:
            raise ConfigError(
                f"need 0 < listings.negative_rate <= 1 and listings.keep_top >= 0; got {self.negative_rate}, {self.keep_top}"
            )


@dataclass
class TrainingSection:
    """How every training stage runs (the encoder, the reranker DNNs, the image encoder, the session
    encoder): processes, devices, feed, retries. A stage's own ``training:`` mapping overrides any of
    these fields for that stage; :func:`runtime` resolves them."""

    feed: Feed = "arrow"  # how training processes read their examples: arrow | petastorm
    num_processes: int = (
        2  # training processes (<= free task slots, or the barrier stage never starts); 1 = in this process
    )
    local_mode: bool = True  # True: processes on the driver; False: barrier tasks on executors
    use_gpu: bool = False  # nccl + one GPU per process (spark.task.resource.gpu.amount must be set)
    # When a training process dies (a lost executor, a crash), the stage runs again this many times
    # from the last epoch's checkpoint; then, with fallback_single and processes on the driver
    # (local_mode), it finishes in one process from it.
    retries: int = 1
    fallback_single: bool = True
    threads: int = 1  # torch threads per process; 0 = all cores (one process only)
    resume: bool = False  # continue from the last checkpoint of the same model version

    def validate(self) -> None:
        _positive("training", num_processes=self.num_processes)
        if self.retries < 0 or self.threads < 0:
            raise ConfigError("training.retries and training.threads must be >= 0")


OVERRIDES = {
    "partial_of": TrainingSection
}  # a stage's `training:` mapping: some of its fields, for that stage


@dataclass
class EncoderHyper:
    """The two-tower encoder's hyper-parameters: the one definition (``encoder.model.TowerConfig``
    extends it with the vocabulary and the input mode; the ``encoder`` section with how it trains)."""

    dim: int = 64  # embedding size
    embed_dim: int = 64  # size of each input embedding
    hidden: int = 256  # MLP hidden layer on top of the concatenated inputs
    use_id: bool = True  # hashed offer-id embedding (collaborative part); False = content only
    # training: probability of zeroing an offer's id embedding (cold-start practice); 0.4, gate and mixed
    # negatives were chosen on validation pairs carved from the training period (benchmarks/hybrid.py)
    id_dropout: float = 0.4
    id_dim: int = 0  # width of the id embedding (the collaborative half's capacity); 0 = embed_dim
    min_id_pairs: int = 1  # an offer's id embedding is trained and used once it has this many training pairs
    # how the id half joins the content half: "sum" (its projection added), "gate" (added through a
    # learned per-dimension gate of both halves) or "concat" (fed into the MLP beside the content)
    combine: Literal["sum", "gate", "concat"] = "gate"
    session_decay: float = 0.7  # recency weight of a session's k-th most recent offer: decay ** k
    session_len: int = 10  # a session query pools its last N offers


@dataclass
class EncoderSection(EncoderHyper):
    """train_encoder: the model (:class:`EncoderHyper`), its optimisation and its evaluation."""

    epochs: int = 4  # passes over the training pairs
    batch_size: int = 1024  # pairs per step per process (in-batch negatives: batch_size - 1)
    lr: float = 0.01  # learning rate (SparseAdam / AdamW)
    temperature: float = 0.05  # softmax temperature
    # negatives beside the batch's own candidates (retrieval.encoder.negatives): "in_batch" alone,
    # "mixed" (+ uniform_negatives offers drawn uniformly from the catalogue per step) or "queue" (+ the
    # candidate vectors of the last queue_size pairs, from a momentum copy of the tower)
    negatives: Literal["in_batch", "mixed", "queue"] = "mixed"
    uniform_negatives: int = 256  # mixed: offers drawn uniformly per step and process
    uniform_pool: int = 100_000  # mixed: the uniform sample of the catalogue every process holds to draw from
    queue_size: int = 2048  # queue: candidate vectors kept
    queue_momentum: float = 0.99  # queue: the momentum copy's moving-average rate (0 = the live tower)
    baseline: bool = True  # also train content_trained, a content-only tower, on the same batches
    eval_queries: int = 5000  # test query offers sampled for Recall@K / MRR
    eval_k: int = 100  # depth of the evaluated top-K
    ceiling_queries: int = 1000  # synthetic data: of those, the ones the generator's oracle ranks too
    training: dict[str, Any] = field(
        default_factory=dict, metadata=OVERRIDES
    )  # this stage's overrides of the `training` section

    def validate(self) -> None:
        _positive("encoder", dim=self.dim, epochs=self.epochs, batch_size=self.batch_size)
        _positive("encoder", uniform_negatives=self.uniform_negatives, uniform_pool=self.uniform_pool)
        _positive("encoder", queue_size=self.queue_size, min_id_pairs=self.min_id_pairs)
        _unit("encoder", id_dropout=self.id_dropout)
        if not (self.lr > 0 and self.temperature > 0):  # NaN too
            raise ConfigError("encoder.lr and encoder.temperature must be > 0")
        if not 0.0 <= self.queue_momentum < 1.0:
            raise ConfigError(f"encoder.queue_momentum must be in [0, 1); got {self.queue_momentum}")
        if self.id_dim < 0:
            raise ConfigError(f"encoder.id_dim must be >= 0 (0 = embed_dim); got {self.id_dim}")


@dataclass
class EmbedSection:
    """embed_offers: distributed batch inference."""

    model: str = (
        ""  # an encoder model dir; empty = the model train_encoder wrote last (its metrics say which)
    )
    batch_size: int = 4096  # offers per forward pass
    threads: int = 1  # torch threads per task (tasks per executor x threads <= executor cores)
    use_gpu: bool = True  # use CUDA where Spark assigned the task a GPU (spark.task.resource.gpu.amount)


@dataclass
class IndexSection:
    """build_index: one trained quantizer, one faiss shard per partition of the embeddings."""

    # a faiss factory string (Flat, IVF4096,Flat, OPQ16,IVF65536,PQ16x8, ...,RFlat); empty = planned
    # from the number of vectors and memory_gb (index.planning: IVF with ~lists_per_sqrt x sqrt(n) lists)
    factory: str = ""
    memory_gb: float = (
        0.0  # planned index: the codes' memory budget (above it, product quantisation); 0 = none
    )
    lists_per_sqrt: float = 4.0  # planned index: inverted lists per sqrt(vectors) (autofaiss: 4-16)
    shards: int = 4  # shards (= partitions of the embeddings when the index is built)
    # at most this many vectors sampled to the driver to train the quantizer / codebooks; a planned
    # index has at most train_size / 39 lists (200k vectors, 53 MB: 4,096 lists, ~4 sqrt(n) to ~1M)
    train_size: int = 200_000
    nprobe: int = (
        0  # IVF lists searched per query; 0 = the smallest that reaches target_recall (in the manifest)
    )
    target_recall: float = 0.97  # nprobe chosen for this recall@10 against exact search, on sampled offers
    k_factor: float = 0.0  # refine step (RFlat): candidates re-ranked = k_factor x k; 0 = faiss default
    threads: int = 1  # faiss threads per task
    eval_queries: int = (
        1000  # sampled queries for recall@10 of the index vs exact search (and as many to choose nprobe)
    )
    quantizer: str = ""  # a stored quantizer.faiss to reuse instead of training one (same factory and dim)
    quantizer_sha256: str = ""  # its checksum, checked before use when set (the index's manifest records it)
    merge: bool = (
        False  # also merge the IVF shards into one on-disk index for serving (merged.faiss + .ivfdata)
    )

    def validate(self) -> None:
        _positive("index", shards=self.shards)
        if (
            self.nprobe < 0
            or not 0.0 < self.target_recall <= 1.0
            or self.lists_per_sqrt <= 0
            or self.memory_gb < 0
        ):
            raise ConfigError(
                "need index.nprobe >= 0, 0 < index.target_recall <= 1, index.lists_per_sqrt > 0, index.memory_gb >= 0"
            )
        if self.train_size < 39 * 16:  # a planned index's fewest lists (16), 39 training vectors each
            raise ConfigError(f"need index.train_size >= 624 (16 lists x 39 vectors); got {self.train_size}")


@dataclass
class RecsSection:
    """precompute_recs, and the incremental mode of embed_offers / build_index / precompute_recs."""

    k: int = 20  # recommendations per offer
    candidates: int = 60  # nearest offers searched per offer, before removing self / same product
    category_cap: int = 0  # at most N recommendations per category (0 = no cap)
    mode: Literal["full", "incremental", "compact"] = (
        "full"  # incremental: only offers updated since recs.since; compact: fold deltas into shards
    )
    since: str = ""  # incremental: offers with updated_at >= this (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS, UTC)
    eval_queries: int = 5000  # test query offers for recall_at_20_test_pairs
    ceiling_queries: int = 1000  # synthetic data: of those, the ones the generator's oracle ranks too
    # offers without product_id matched to a product by photo or title (retrieval.index.matching): a
    # title match needs the price within this factor of the product's and at least this many words
    match_price_band: float = 1.5
    match_min_tokens: int = 2
    # ... and, where a title fits several products, by what the photos show (matching.photo_look): the
    # nearest product's photos must be within this distance (0 = no matching by photo content)
    match_look_distance: float = 0.1
    # ... then an offer still unmatched takes the key of one of its this many nearest offers by
    # embedding that shows its product (matching.near_duplicate_key: price in the band, this many
    # title words shared, photos within this look distance); 0 = no near-duplicate pass
    match_neighbours: int = 50
    match_shared_words: int = 2
    match_near_look_distance: float = 0.12

    def validate(self) -> None:
        if self.mode == "incremental" and not self.since:
            raise ConfigError("recs.mode=incremental needs recs.since (offers updated since when?)")
        if self.since:
            try:
                datetime.strptime(self.since, "%Y-%m-%d" if len(self.since) <= 10 else "%Y-%m-%d %H:%M:%S")
            except ValueError:
                raise ConfigError(
                    f"recs.since must be YYYY-MM-DD or YYYY-MM-DD HH:MM:SS (UTC); got {self.since!r}"
                ) from None
        if self.k < 1 or self.candidates < self.k:
            raise ConfigError(f"need 1 <= recs.k <= recs.candidates; got {self.k}, {self.candidates}")
        if not self.match_price_band >= 1.0:  # NaN too
            raise ConfigError(f"recs.match_price_band must be >= 1 (a factor); got {self.match_price_band}")
        _positive("recs", match_min_tokens=self.match_min_tokens)
        if not 0.0 <= self.match_look_distance <= 1.0:  # NaN too
            raise ConfigError(f"recs.match_look_distance must be in [0, 1]; got {self.match_look_distance}")
        if not 0.0 <= self.match_near_look_distance <= 1.0:  # NaN too
            raise ConfigError(
                f"recs.match_near_look_distance must be in [0, 1]; got {self.match_near_look_distance}"
            )
        if self.match_neighbours < 0:
            raise ConfigError(f"recs.match_neighbours must be >= 0; got {self.match_neighbours}")
        _positive("recs", match_shared_words=self.match_shared_words)


@dataclass
class SessionsSection:
    """The session next-item benchmark (eval_sessions) on a folder in the SR-GNN format."""

    dir: str = ""  # folder with train_sessions.txt and test_prefix_label.tsv
    name: str = (
        ""  # dataset name: tables under <root>/sessions/<name>, results in <paths.results>/<name>.json
    )
    max_len: int = 10  # a session query pools its last N items
    dim: int = 64  # embedding size of the id-only encoder
    epochs: int = 3  # passes over the training prefixes
    batch_size: int = 1024  # prefixes per step (in-batch negatives: batch_size - 1)
    uniform_negatives: int = (
        0  # extra negatives drawn uniformly from the catalogue per step (0 = in-batch only)
    )
    lr: float = 0.003  # learning rate
    temperature: float = 0.07  # softmax temperature
    k: int = 20  # P@k and MRR@k
    training: dict[str, Any] = field(
        default_factory=lambda: {"num_processes": 1, "threads": 0}, metadata=OVERRIDES
    )  # this stage's overrides of `training`: one process on the driver, every core

    def validate(self) -> None:
        if self.training.get("num_processes", 1) != 1:
            raise ConfigError("sessions.training.num_processes: the session encoder trains in one process")


@dataclass
class LossSpec:
    """A loss chosen by name, with its keyword arguments (``{name: neural_ndcg, args: {k: 10}}``; a
    bare name means no arguments)."""

    SHORTHAND: ClassVar[str] = "name"
    name: str = ""  # the loss (a function of the stage's losses package)
    args: dict[str, Any] = field(default_factory=dict)  # its keyword arguments


@dataclass
class RankingLossSpec(LossSpec):
    name: RankingLoss = "ndcg_loss2pp"  # one of ranking.losses.LOSSES


@dataclass
class TripletLossSpec(LossSpec):
    name: TripletMining = "batch_all"  # how triplets are mined in the batch (visual.losses.LOSSES)


@dataclass
class RankerSection:
    """train_ranker: an XGBoost stage on Spark, then a DNN reranker of each listing's top rerank_k."""

    stage: Literal["all", "xgb", "dnn"] = (
        "all"  # xgb: features, XGBoost, slates; dnn: reranker on the slates xgb wrote
    )
    features: list[str] = field(
        default_factory=lambda: [*tables.LISTING_FEATURES, "propensity"]
    )  # listings columns the XGBoost stage uses (the DNN adds the XGBoost scores and the text)
    train_queries: int = 20000  # training searches (with >= 1 click) sampled for XGBoost; 0 = all
    dnn_queries: int = 20000  # other training searches for the DNN (XGBoost never saw them); 0 = the same
    eval_queries: int = 5000  # test searches sampled for the metrics; 0 = all
    xgb_rounds: int = 200  # boosting rounds
    xgb_depth: int = 6
    xgb_eta: float = 0.1
    xgb_pairs: int = 8  # lambdarank_num_pair_per_sample (top-k pair method)
    xgb_workers: int = 2  # SparkXGBRanker num_workers (<= free task slots: a barrier stage)
    rerank_k: int = 300  # the DNN reranks each listing's top N by the XGBoost score
    text: bool = True  # query / title text vectors from the encoder's bags as DNN input
    losses: list[RankingLossSpec] = field(
        default_factory=lambda: [
            RankingLossSpec("ndcg_loss2pp"),
            # Sinkhorn steps: allRank uses 50; each costs ~L^2. k: NeuralNDCG@k, the metric's cutoff.
            RankingLossSpec("neural_ndcg", {"sinkhorn_iterations": 20, "k": 10}),
        ]
    )  # one DNN per loss
    dnn_ips: bool = True  # DNN: inverse-propensity gains from `propensity` (position-bias correction)
    ablate_ips: bool = (
        False  # also the first loss's DNN without them (dnn_<loss>_no_ips): what they buy (conf/bench.yaml)
    )
    dnn_kind: Literal["mlp", "attention"] = "mlp"  # attention: self-attention across the slate
    dnn_hidden: int = 128
    dnn_epochs: int = 2
    dnn_batch_size: int = 32  # slates per step and process
    dnn_lr: float = 0.001
    training: dict[str, Any] = field(
        default_factory=dict, metadata=OVERRIDES
    )  # this stage's overrides of `training` (the DNNs)

    def validate(self) -> None:
        if not self.losses:
            raise ConfigError("ranker.losses must name at least one loss")
        if self.rerank_k < 2:
            raise ConfigError(f"ranker.rerank_k must be >= 2; got {self.rerank_k}")
        _positive("ranker", xgb_workers=self.xgb_workers)
        if self.dnn_ips and "propensity" not in self.features:
            raise ConfigError(
                "ranker.dnn_ips needs `propensity` among ranker.features (or --set ranker.dnn_ips=false)"
            )


@dataclass
class LtrSection:
    """eval_ltr: our rankers and LightGBM lambdarank on an LTR set in SVMlight files."""

    train: str = ""  # SVMlight file (qid: fields, or a <file>.query side file)
    test: str = ""
    name: str = ""  # results in <paths.results>/<name>.json
    seeds: int = 5  # every method trained with this many seeds
    bootstrap: int = 1000  # bootstrap rounds over test queries
    dnn_epochs: list[int] = field(default_factory=lambda: [10, 20, 40])  # chosen on a validation split
    valid_share: float = 0.2  # training queries held out to choose the DNN's epochs
    dnn_batch_size: int = 16  # queries per step

    def validate(self) -> None:
        _positive("ltr", seeds=self.seeds)
        if not 0.0 < self.valid_share < 1.0:
            raise ConfigError(f"ltr.valid_share must be in (0, 1); got {self.valid_share}")


@dataclass
class VisualSection:
    """Visual search (retrieval.visual): shop/street pairs, the triplet-trained image encoder, accuracy@K."""

    images: str = ""  # directory of catalogue photos; empty = the synthetic catalogue (offers.image_ref)
    catalog: str = ""  # CSV with columns image (file name, looked up in `images`) and id (the product)
    name: str = ""  # evaluate_visual also writes <paths.results>/<name>.json (a benchmark on real photos)
    size: int = 64  # images are resized to size x size
    max_pixels: int = MAX_PIXELS  # an image whose header declares more pixels is not decoded (too_large)
    max_products: int = 1200  # products used (train + test), a hash sample; 0 = all
    test_share: float = (
        0.3  # share of products held out (queries and gallery), by product; 1 = a gallery only to evaluate on
    )
    per_style: int = 1  # synthetic street photos per training product and style (4 styles)
    max_rms: float = 0.01  # near-duplicate threshold (RMS difference of 8x8 colour thumbnails)
    # one model per variant (retrieval.visual.train.VARIANTS): the augmentation-only baseline and the street
    # model; conf/bench.yaml adds the ablations (seamless, blur, natural_bg, uniform_bg)
    variants: list[VisualVariant] = field(default_factory=lambda: ["shop_only", "street"])
    dim: int = 128  # embedding size
    width: int = 16  # channels of the CNN's stem (x2 per block); 16: ~1,200 images/s training on 2 CPU cores
    epochs: int = 6
    batch_products: int = 32  # products per step (x (1 + views) images)
    views: int = 3  # views per product in a batch besides its shop photo
    lr: float = 0.002
    # Triplets mined in the batch, and the margin. batch_all by default: from scratch on street photos,
    # batch-hard (plain and soft margin) collapsed the embedding within the first epoch (loss stuck at
    # its collapsed value, accuracy@5 at chance).
    loss: TripletLossSpec = field(default_factory=lambda: TripletLossSpec("batch_all", {"margin": 0.2}))
    shop_views: int = 0  # of the views, how many are augmented shop photos even in street variants
    threads: int = 2  # torch threads per inference task (embed_images, evaluate_visual)
    use_gpu: bool = False  # inference on the task's GPU where Spark assigned one
    model: str = ""  # embed_images: models/visual/<variant>/<version>; empty = street's latest
    index_shards: int = 2  # embed_images: shards of the image index
    grid_queries: int = 8  # evaluate_visual: query rows in the example grid
    training: dict[str, Any] = field(
        default_factory=lambda: {"num_processes": 1, "threads": 2}, metadata=OVERRIDES
    )  # this stage's overrides of `training`: by default one process on the driver with 2 threads

    def validate(self) -> None:
        _positive("visual", size=self.size, max_pixels=self.max_pixels)
        if not 0 <= self.shop_views <= self.views:
            raise ConfigError(
                f"need 0 <= visual.shop_views <= visual.views; got {self.shop_views}, {self.views}"
            )
        if not 0.0 < self.test_share <= 1.0:
            raise ConfigError(f"visual.test_share must be in (0, 1]; got {self.test_share}")
        if self.size < 16 or self.size % 16:
            raise ConfigError(
                f"visual.size must be a multiple of 16 (the pixel baseline's 16x16 grid); got {self.size}"
            )
        if bool(self.images) != bool(self.catalog):
            raise ConfigError(
                "visual.images and visual.catalog go together (a directory of photos and its CSV)"
            )


@dataclass
class ReportSection:
    """evaluate: the report."""

    ablations: str = (
        ""  # also write this run's ablations to <paths.results>/<name>.json (conf/bench.yaml: ablations)
    )


@dataclass
class TrackingSection:
    """MLflow tracking of every stage (retrieval.tracking)."""

    enabled: bool = True  # false: no tracking at all
    uri: str = ""  # tracking server or store; empty = sqlite:///<root>/mlflow.db for a local root
    experiment: str = "retrieval-at-scale"  # MLflow experiment the runs go to


@dataclass
class ServingSection:
    """publish_recs and lookup: the serving store (retrieval.serving.store)."""

    redis_url: str = ""  # redis://host:port/db; empty = no serving store (lookup reads the recs table)
    namespace: str = "retrieval:recs"  # key prefix of the published carousels
    keep_versions: int = 2  # versions kept: the live one and the one before it (a rollback), or more
    batch: int = 1000  # carousels per pipelined round trip while loading

    def validate(self) -> None:
        _positive("serving", batch=self.batch)
        if self.keep_versions < 2:
            raise ConfigError(
                f"serving.keep_versions must be >= 2 (the live and the previous); got {self.keep_versions}"
            )
        if not self.namespace or self.namespace.endswith(":"):
            raise ConfigError(
                f"serving.namespace must be a non-empty prefix without a trailing ':'; got {self.namespace!r}"
            )
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"serving.redis_url must be redis://, rediss:// or unix://; got {self.redis_url!r}"
            )


def _neural_ndcg_arg(name: str, convert: Any = None) -> Any:
    def apply(cfg: Config, value: Any) -> None:
        for spec in cfg.ranker.losses:
            if spec.name == "neural_ndcg":
                spec.args[name] = convert(value) if convert else value

    apply.__doc__ = f"ranker.losses[neural_ndcg].args.{name}"
    return apply


@dataclass
class Config:
    seed: int = 20261125  # every random choice in every stage derives from this
    progress_s: float = (
        30.0  # seconds between progress lines of long loops (training, the report); 0 = the closing line only
    )
    paths: PathsSection = field(default_factory=PathsSection)
    spark: SparkSection = field(default_factory=SparkSection)
    synth: SynthSection = field(default_factory=SynthSection)
    ingest: IngestSection = field(default_factory=IngestSection)
    split: SplitSection = field(default_factory=SplitSection)
    pairs: PairsSection = field(default_factory=PairsSection)
    listings: ListingsSection = field(default_factory=ListingsSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    encoder: EncoderSection = field(default_factory=EncoderSection)
    embed: EmbedSection = field(default_factory=EmbedSection)
    index: IndexSection = field(default_factory=IndexSection)
    recs: RecsSection = field(default_factory=RecsSection)
    sessions: SessionsSection = field(default_factory=SessionsSection)
    ranker: RankerSection = field(default_factory=RankerSection)
    ltr: LtrSection = field(default_factory=LtrSection)
    visual: VisualSection = field(default_factory=VisualSection)
    report: ReportSection = field(default_factory=ReportSection)
    tracking: TrackingSection = field(default_factory=TrackingSection)
    serving: ServingSection = field(default_factory=ServingSection)

    # Keys renamed in 0.2 (the `train` section split into `training` and `encoder`): still read, with
    # a ConfigWarning, until the next release.
    DEPRECATED: ClassVar[dict[str, Any]] = {
        **{f"train.{k}": f"training.{k}" for k in ("feed", "num_processes", "local_mode", "use_gpu")},
        **{f"train.{k}": f"training.{k}" for k in ("retries", "fallback_single", "threads", "resume")},
        "train.progress_s": "progress_s",
        **{
            f"train.{k}": f"encoder.{k}"
            for k in ("epochs", "batch_size", "lr", "temperature", "queue_size", "eval_queries", "eval_k")
        },
        "ranker.num_processes": "ranker.training.num_processes",
        "ranker.sinkhorn_iterations": _neural_ndcg_arg("sinkhorn_iterations"),
        "ranker.neural_ndcg_k": _neural_ndcg_arg("k", lambda v: v or None),
        **{f"visual.{k}": f"visual.training.{k}" for k in ("num_processes", "local_mode", "feed")},
        "visual.mining": "visual.loss.name",
        "visual.margin": "visual.loss.args.margin",
        "sessions.threads": "sessions.training.threads",
        **{f"{s}.results_dir": "paths.results" for s in ("sessions", "ltr", "visual")},
    }

    def validate(self) -> None:
        """What stages collect to the driver must fit spark.driver.maxResultSize (Spark's 1g if unset; 0 = no limit)."""
        given = self.spark.conf.get("spark.driver.maxResultSize", "1g")  # Spark's default
        limit = spark_bytes(given)
        for key, n in driver_bytes(self).items() if limit > 0 else ():  # 0: no limit
            if n > limit:
                raise ConfigError(
                    f"{key} brings up to ~{n / 2**20:.1f} MB to the driver, more than "
                    f"spark.driver.maxResultSize={given}: lower it"
                )


def spark_bytes(text: str) -> int:
    """A Spark size (``4m``, ``1g``, ``512k``, ``1024``: bytes; whole numbers, as Spark takes them) in
    bytes; ``-1`` (a threshold turned off) stays -1."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}
    t = str(text).strip().lower()
    t = t[:-1] if len(t) > 2 and t[-1] == "b" and t[-2] in units else t  # 4mb = 4m
    number, unit = (t[:-1], units[t[-1]]) if t[-1:] in units else (t.removesuffix("b"), 1)
    if not (number.isdigit() or number == "-1"):
        raise ConfigError(f"not a size: {text!r} (a whole number with k, m, g or t: 4m, 1g)")
    return int(number) * unit if number != "-1" else -1


def driver_bytes(cfg: Config) -> dict[str, int]:
    """The most a stage brings back to the driver, by the config key that bounds it (bytes, estimated
    from the rows it collects): nothing else a stage collects grows with the data."""
    d = cfg.encoder.dim
    broadcast = spark_bytes(cfg.spark.conf.get("spark.sql.autoBroadcastJoinThreshold", "10m"))
    return {
        "spark.sql.autoBroadcastJoinThreshold": broadcast,  # a broadcast join's build side, via the driver
        "listings.propensity_max_rows": cfg.listings.propensity_max_rows
        * 64,  # (pair, position, n, clicks), Arrow
        "encoder.eval_queries": cfg.encoder.eval_queries
        * (2 * cfg.encoder.eval_k * 24 + 1200),  # top-k x 2, features
        "index.train_size": cfg.index.train_size * (4 * d + 8),  # the quantizer's training sample
        "index.eval_queries": 2 * cfg.index.eval_queries * (4 * d + 10 * 24),  # sampled queries, exact top-10
        "recs.eval_queries": cfg.recs.eval_queries * 3000,  # carousels, baselines' top-20, ~70 product keys
    }


def runtime(cfg: Config, stage: str) -> TrainingSection:
    """The training runtime of ``stage`` (``encoder``, ``ranker``, ``visual``, ``sessions``): the
    ``training`` section with the stage's own ``training:`` overrides applied."""
    resolved = dataclasses.replace(cfg.training, **getattr(cfg, stage).training)
    resolved.validate()
    return resolved
