"""activity-cdc benchmarks: what the project does, against the baselines a user compares with.

``python -m bench [--quick] [PART ...]`` starts a throwaway PostgreSQL (fsync on), builds the
demo platform, and measures, each against its baseline in the same run:

===========  ========================================================================
part         measures (module in bench/sections/)
===========  ========================================================================
``write``    TPS and latency: no auditing, 64 legacy triggers, CDC (write_path)
``drain``    changes/s: ``cdc run --drain``, pg_recvlogical, a Python peer (drain)
``latency``  commit to visible record at steady offered loads (latency)
``memory``   peak RSS of the daemon on a huge transaction and on a backlog (memory)
``queries``  the monitor's hot queries on a store of millions of records (queries)
``profile``  where the daemon's time goes per change, sampled with py-spy (profile)
===========  ========================================================================

Results: ``results.json`` (everything, with the machine), ``results.md`` and ``results.png``,
both generated from the JSON (bench/report). See docs/benchmarks.md.
"""
