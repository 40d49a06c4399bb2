"""LoadGen's random seeds of earlier MLPerf rounds, for results checked by that round's rules.

LoadGen (6.0.17) carries the current round's seeds in its built-in mlperf.conf and reads seeds from
no other file (a user.conf line is ignored), so a run that must pass an earlier round's checker sets
them on its TestSettings (`harness run --seeds ROUND`, harness/settings.py). The one use: Server
results mapped to bert-99, which the checker validates with BERT's 130 ms Server bound only up to
round v4.1 (from v5.0 bert-99 is an edge benchmark, SingleStream and Offline only):
docs/submission.md. The values are that round's, as its submission checker expects them.
"""

from __future__ import annotations

# round -> (qsl_rng_seed, sample_index_rng_seed, schedule_rng_seed)
SEEDS: dict[str, tuple[int, int, int]] = {
    "v4.1": (3066443479025735752, 10688027786191513374, 14962580496156340209),
}
