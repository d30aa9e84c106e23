"""``retrieval``: the console command of the installed package (``./submit.sh`` is a wrapper of it).

retrieval pipeline [--config conf/local.yaml] [--set K=V ...] [--from S | --only S,...]
retrieval submit <job> [--dry-run] [options]      any job through spark-submit
retrieval lookup <offer_id> ...                   carousels, from the serving store when configured
retrieval <job> [options]                         the same as ``retrieval submit <job>``
retrieval --print-config [--config F] [--set K=V ...]   the resolved config, without running
retrieval --version | --help
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from retrieval import __version__, submit

USAGE = """usage: retrieval <command> [options]

commands:
  pipeline                 every stage of the pipeline, in order, in one Spark application
  submit <job>             one job through spark-submit (./submit.sh <job> is the same)
  lookup <offer_id> ...    an offer's carousels, from the serving store when serving.redis_url is set
  <job>                    the same as `submit <job>`: retrieval mine_pairs --config conf/test.yaml
  --print-config           the resolved config (--config FILE, --set K=V ...) as YAML, without running
  --version                the package's version

Every job takes --config FILE (default: the embedded synthetic marketplace, local.yaml; a shipped config
is found by name, e.g. --config test), --set SECTION.KEY=VALUE (repeatable) and --help, which lists the
config keys it reads with their defaults. From Python: `from retrieval import run`.
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE + "\njobs:\n" + submit.job_lines())
        return 0 if args else 2
    if args[0] == "--version":
        print(f"retrieval-at-scale {__version__}")
        return 0
    if args[0] == "--print-config":
        return submit.print_config(args[1:])
    if args[0] == "submit":
        return submit.main(args[1:])
    return submit.main(args)


if __name__ == "__main__":
    sys.exit(main())
