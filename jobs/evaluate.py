"""evaluate: one HTML page a person reads after a run: <root>/report/index.html.

    ./submit.sh evaluate [--config conf/local.yaml]

Reads every stage's `_metrics/<stage>.json` and a few tables, and writes a self-contained page (inline
CSS and PNG figures; opens from disk): the run (config, table sizes, stage durations, quarantine
reasons), candidates (encoder Recall@K against its baselines for warm and cold offers, ANN recall
against exact search, recs coverage and popularity bias), ranking (nDCG@k of every method, the
estimated against the true examination curve), visual search, the real-data benchmarks found under
`paths.results` (labelled as such), and examples to judge by eye (recommendation carousels and
reranked listings, with titles). A section whose stage has not run says so.
"""

from __future__ import annotations

from typing import Any

from retrieval import stages, storage
from retrieval.cli import job_main
from retrieval.config import Config
from retrieval.progress import Progress
from retrieval.report import inputs, sections, spark_report
from retrieval.report.html import render
from retrieval.tracking import Tracker


def run(spark: Any, cfg: Config) -> dict[str, Any]:
    root = cfg.paths.root
    m = inputs.stage_metrics(root, [s.name for s in stages.pipeline_stages() if s.name != "evaluate"])
    popularity = spark_report.recs_popularity(spark, root) if "precompute_recs" in m else None
    against = m.get("train_ranker", {}).get("against")
    builders = [
        (
            "the run",
            lambda: sections.run_section(
                root, cfg.seed, m, inputs.config_text(root, m), Tracker(cfg).ui_command()
            ),
        ),
        ("candidates", lambda: sections.candidates_section(m, popularity)),
        ("ranking", lambda: sections.ranking_section(m)),
        (
            "visual search",
            lambda: sections.visual_section(m, inputs.image(m.get("evaluate_visual", {}).get("examples"))),
        ),
        (
            "benchmarks",
            lambda: sections.benchmarks_section(inputs.benchmarks(cfg.paths.results), cfg.paths.results),
        ),
        ("examples", lambda: sections.examples_section(*spark_report.examples(spark, root, m), against)),
    ]
    built = []
    with Progress("report", len(builders), "sections", every_s=cfg.progress_s) as progress:
        for name, build in builders:
            built.append(build())
            progress.update(1, last=name)
    page = render("retrieval-at-scale: evaluation report", f"run under {root}", built)
    uri = storage.join(root, "report", "index.html")
    storage.write_bytes_atomic(uri, page.encode("utf-8"))
    missing = [s.title for s in built if any('class="missing"' in p for p in s.parts)]
    outputs = {"report/index.html": uri}
    if cfg.report.ablations:  # the benchmark run (conf/bench.yaml): its ablations, for every report
        outputs["ablations"] = storage.join(cfg.paths.results, f"{cfg.report.ablations}.json")
        command = "./submit.sh pipeline --config conf/bench.yaml"
        storage.write_json_atomic(outputs["ablations"], sections.ablations_payload(m, command))
    return {
        "report": uri,
        "stages_reported": list(m),
        "popularity": popularity,
        "rows_out": len(m),
        "outputs": outputs,
        "artifacts": {"report": uri},  # tracked with the run (retrieval.tracking)
        "summary": [
            f"report of {len(m)} stages: {storage.absolute(uri)} (open it in a browser)",
            *([f"sections with something missing: {', '.join(missing)}"] if missing else []),
        ],
    }


if __name__ == "__main__":
    job_main("evaluate", run, __doc__)
