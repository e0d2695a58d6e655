#!/bin/bash
# Phases of `train iforest` + `score` on 1 000 000 x 10 doubles (issue 19's fast data path):
# load_ms, fit_ms, score_ms, write_ms from model_runs, and each command's wall and CPU time.
# Alternate binaries in one session to compare them (the machine's load shows in every time):
#   for r in 1 2; do bench/iforest_phases.sh BEFORE before$r; bench/iforest_phases.sh AFTER after$r; done
# The table (the analysis benchmark's synthetic rows) is made once in $DB (default /tmp/iforest_phases.db).
set -euo pipefail
B=$1; T=$2; DB=${DB:-/tmp/iforest_phases.db}
if [ ! -f "$DB" ]; then
    python3 -c "
import numpy as np, pandas as pd
rng = np.random.default_rng(7); x = rng.standard_normal((1000000, 10)); x[:10000] *= 4.0
pd.DataFrame(x, columns=[f'f{i}' for i in range(10)]).to_parquet('$DB.parquet', index=False)"
    "$B" --db "$DB" -c "CREATE TABLE synthetic AS SELECT * FROM read_parquet('$DB.parquet')"
    rm -f "$DB.parquet"
fi
/usr/bin/time -f "$T train wall %e s, cpu %U+%S s" "$B" --db "$DB" train iforest --on synthetic --seed 0 --model "m_$T" >/dev/null
/usr/bin/time -f "$T score wall %e s, cpu %U+%S s" "$B" --db "$DB" score "m_$T" --on synthetic >/dev/null
"$B" --db "$DB" --format csv -c "SELECT '$T' AS tag, kind, round(load_ms) AS load_ms, round(fit_ms) AS fit_ms, round(score_ms) AS score_ms, round(write_ms) AS write_ms FROM model_runs WHERE model = 'm_$T' ORDER BY run_id"
