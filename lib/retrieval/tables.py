"""Table contracts of DESIGN.md: names, locations under ``paths.root`` and column types.

Pure Python (no pyspark import): types are Spark SQL type strings, so the same contract is checked
against a Spark schema (``spark_tables.validate``) and read by people. A table's location is
``<root>/<name>`` (``raw/events``, ``quarantine/offers``, ``truth/relevance`` ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from retrieval import storage


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # Spark SQL simpleString: bigint, int, string, double, timestamp, array<bigint> ...
    nullable: bool = True


@dataclass(frozen=True)
class Contract:
    name: str  # also the path below paths.root
    columns: tuple[Column, ...]
    extra_columns: bool = False  # True where the contract says "features…": more columns may follow
    producer: str = ""  # the stage that writes it (named in "table not found" errors)
    description: str = ""

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def ddl(self) -> str:
        """The contract as a Spark DDL schema string, e.g. ``offer_id bigint, title string``."""
        return ", ".join(f"`{c.name}` {c.dtype}" for c in self.columns)


def _c(spec: str) -> tuple[Column, ...]:
    """Parses ``"name type, name type?"``; a trailing ``?`` marks the column nullable, bare means required."""
    out = []
    for part in _split_top_level(spec):
        name, dtype = part.strip().split(" ", 1)
        dtype = dtype.strip()
        nullable = dtype.endswith("?")
        out.append(Column(name, dtype.rstrip("?"), nullable))
    return tuple(out)


def _split_top_level(spec: str) -> list[str]:
    """Splits on commas that are not inside ``<...>`` (struct and array types contain commas)."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in spec:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur))
    return parts


OFFERS = Contract(
    "offers",
    _c(
        "offer_id bigint, title string?, category_id int?, price double?, seller_id bigint?, "
        "product_id bigint?, image_ref string?, updated_at timestamp?, deleted boolean?"
    ),
    producer="ingest",
    description="one row per offer; content may be missing; product_id null where the catalogue does not know it",
)
EVENTS = Contract(
    "events",
    _c(
        "session_id string, ts timestamp, event string, offer_id bigint?, query_id string?, "
        "query_text string?, listing array<bigint>?, position int?"
    ),
    producer="ingest",
    description="one row per event; a search row carries its listing (offers shown, in order)",
)
# Raw inputs as a log producer writes them: timestamps are strings, nothing is guaranteed.
RAW_OFFERS = Contract(
    "raw/offers",
    _c(
        "offer_id bigint?, title string?, category_id int?, price double?, seller_id bigint?, "
        "product_id bigint?, image_ref string?, updated_at string?, deleted boolean?"
    ),
    producer="generate (or a data importer)",
)
RAW_EVENTS = Contract(
    "raw/events",
    _c(
        "session_id string?, ts string?, event string?, offer_id bigint?, query_id string?, "
        "query_text string?, listing array<bigint>?, position int?"
    ),
    producer="generate (or a data importer)",
)
QUARANTINE_COLUMNS = _c("raw string, reason string, job string, ts timestamp")
PAIRS = Contract(
    "pairs",
    _c("query_offer_id bigint, item_offer_id bigint, weight double, split string"),
    producer="mine_pairs",
)
# The ranking features mine_listings writes into `listings` (beside label and propensity).
LISTING_FEATURES = (
    "price",
    "price_rank",
    "price_z",
    "pop_log",
    "ctr_prior",
    "buy_prior",
    "bm25",
    "token_overlap",
    "category_share",
    "listing_size",
)
LISTINGS = Contract(
    "listings",
    _c(
        "query_id string, offer_id bigint, position int, label int, propensity double, weight double, split string"
    ),
    extra_columns=True,
    producer="mine_listings",
)
EMBEDDINGS = Contract(
    "embeddings", _c("offer_id bigint, vector array<float>, model_version string"), producer="embed_offers"
)
EMBEDDINGS_DELTA = Contract(
    "embeddings_delta",
    _c("offer_id bigint, vector array<float>?, model_version string, deleted boolean"),
    producer="embed_offers (recs.mode=incremental)",
    description="offers changed since recs.since: new vectors, or deleted = true (vector null)",
)
RECS = Contract(
    "recs",
    _c("offer_id bigint, recs array<struct<offer_id:bigint,score:float>>, model_version string"),
    producer="precompute_recs",
)
# The encoder's materialised inputs (internal, but contracts all the same: the feeds read them).
ENCODER_FEATURES = Contract(
    "encoder/offer_features",
    _c(
        "offer_id bigint, word_ids array<int>, char_ids array<int>, category int, price_bucket int, seller int, offer int"
    ),
    producer="train_encoder",
)
ENCODER_EXAMPLES = Contract(
    "encoder/train_examples",
    _c("query_offer_id bigint, item_offer_id bigint, log_q double"),
    extra_columns=True,
    producer="train_encoder",
)
ENCODER_UNIFORM_POOL = Contract(
    "encoder/uniform_pool",
    _c(
        "offer_id bigint, word_ids array<int>, char_ids array<int>, category int, price_bucket int, seller int, "
        "offer int, unigram_log_q double"
    ),
    producer="train_encoder",
)
# The ranker's slates: one listing per row, offers in first-stage (XGBoost) order (ranking.spark_ranker).
_SLATE = (
    "query_id string, qid bigint, split string, n int, offer_id array<bigint>, position array<int>, "
    "label array<int>, grade array<int>?, x array<float>"
)
RANKER_TRAIN_SLATES = Contract(
    "ranker/train_slates",
    _c(_SLATE),
    extra_columns=True,
    producer="train_ranker (ranker.stage=xgb)",
    description="training searches with a click, top ranker.rerank_k offers",
)
RANKER_TEST_SLATES = Contract(
    "ranker/test_slates",
    _c(_SLATE),
    extra_columns=True,
    producer="train_ranker (ranker.stage=xgb)",
    description="sampled test searches, whole listings, with every first-stage score",
)
RANKER_TEST_SCORED = Contract(
    "ranker/test_scored",
    _c(_SLATE),
    extra_columns=True,
    producer="train_ranker (ranker.stage=dnn)",
    description="test slates with each DNN's final scores (dnn_<loss>)",
)
# Ground truth of the synthetic marketplace: for grading stages, never read by training.
TRUTH_OFFER_PRODUCT = Contract(
    "truth/offer_product",
    _c("offer_id bigint, product_id bigint, cluster_id bigint, category_id int"),
    producer="generate",
)
TRUTH_RELEVANCE = Contract(
    "truth/relevance", _c("query_id string, offer_id bigint, grade int"), producer="generate"
)
VISUAL_IMAGES = Contract(
    "visual/images",
    _c("image_id bigint, label bigint, split string, source string, image binary"),
    producer="visual_pairs",
    description="the filtered, de-duplicated catalogue photos (PNG, visual.size square); label = product",
)
VISUAL_QUARANTINE = Contract(
    "visual/quarantine",
    _c("image_id bigint, label bigint?, source string?, reason string"),
    producer="visual_pairs",
    description="catalogue photos left out: unreadable, blank, no_object, duplicate_of:<kept image_id>",
)
VISUAL_GROUPS = Contract(
    "visual/train_groups",
    _c(
        "label bigint, shop array<binary>, street_seamless_natural array<binary>, "
        "street_seamless_uniform array<binary>, street_blur_natural array<binary>, street_blur_uniform array<binary>"
    ),
    producer="visual_pairs",
    description="one row per training product: its shop photos and synthetic street photos per style",
)
VISUAL_QUERIES = Contract(
    "visual/test_queries",
    _c("label bigint, image_id bigint, image binary"),
    producer="visual_pairs",
    description="one synthetic street photo (JPEG) per held-out product, made from its shop photo image_id",
)
VISUAL_EMBEDDINGS = Contract(
    "visual/embeddings",
    _c("image_id bigint, label bigint, split string, vector array<float>, model_version string"),
    producer="embed_images",
)
TRUTH_EXAMINATION = Contract("truth/examination", _c("position int, probability double"), producer="generate")


def quarantine(table: str) -> Contract:
    """The quarantine table of ``table``: raw row as JSON, the reason, the job that rejected it, when."""
    return Contract(f"quarantine/{table}", QUARANTINE_COLUMNS, producer="ingest")


CONTRACTS: dict[str, Contract] = {
    c.name: c
    for c in (
        OFFERS,
        EVENTS,
        RAW_OFFERS,
        RAW_EVENTS,
        PAIRS,
        LISTINGS,
        EMBEDDINGS,
        EMBEDDINGS_DELTA,
        RECS,
        RANKER_TRAIN_SLATES,
        RANKER_TEST_SLATES,
        RANKER_TEST_SCORED,
        TRUTH_OFFER_PRODUCT,
        TRUTH_RELEVANCE,
        TRUTH_EXAMINATION,
        VISUAL_IMAGES,
        VISUAL_QUARANTINE,
        VISUAL_GROUPS,
        VISUAL_QUERIES,
        VISUAL_EMBEDDINGS,
        quarantine("offers"),
        quarantine("events"),
    )
}


def path(root: str, table: Contract | str) -> str:
    """Location of the committed version of a table under ``root`` (a path or URI), for readers that
    are not Spark (training feeds, benchmarks); the one its open stage transaction wrote, in a stage.

    Raises:
        FileNotFoundError: the table has no committed version.
    """
    from retrieval import commit

    name = table.name if isinstance(table, Contract) else table
    uri = commit.resolve(root, name)
    if uri is None:
        raise FileNotFoundError(f"table '{name}' not found at {storage.join(root, name)}")
    return uri
