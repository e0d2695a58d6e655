#!/bin/sh
# Policy verdicts on the demo day's ordinary traffic (issue 21). Usage: bench/policy_alarms.sh NETLENS [DEMO_DB]
# With DEMO_DB (a database made by an older `netlens demo --hours 24`), a copy of it is judged,
# so two binaries can be compared on the same day; without, a new demo day is made.
# Baseline: the demo's first 12 hours; judged: the last 12 (5-minute windows of active flows).
# Prints the verdicts per day, leaving out the planted upload's peer (198.51.100.77).
# With CLEAN_HOURS (a third argument, stop 27), the last CLEAN_HOURS of the first 12 are declared
# clean (train policy --set clean_from=...): the baseline is the hours before them and they
# calibrate the anomaly threshold; the judged hours stay the last 12. With a fourth argument
# `drop`, those hours are left out of the source instead (the control: the same shorter
# baseline, no calibration).
set -e
NL=$1; CLEAN=${3:-0}; MODE=${4:-calibrate}
DB=$(mktemp -d)/p.duckdb
if [ -n "$2" ]; then cp "$2" "$DB"; else $NL --db "$DB" demo --hours 24 --quiet; fi
SPLIT=$($NL --db "$DB" --format csv -c "SELECT strftime(time_bucket(INTERVAL 5 MINUTE, min(ts) + INTERVAL 12 HOUR), '%Y-%m-%d %H:%M:%S') FROM snapshots" | tail -1)
SOURCE="SELECT * FROM active_flow_features_by(INTERVAL 5 MINUTE)"
if [ "$CLEAN" = 0 ]; then
  $NL --db "$DB" train policy --on "$SOURCE" --set "split=$SPLIT" --seed 7 > /dev/null 2>&1
else
  CLEAN_FROM=$($NL --db "$DB" --format csv -c "SELECT strftime(TIMESTAMP '$SPLIT' - INTERVAL $CLEAN HOUR, '%Y-%m-%d %H:%M:%S')" | tail -1)
  if [ "$MODE" = drop ]; then
    $NL --db "$DB" train policy --on "$SOURCE WHERE NOT (window_start >= TIMESTAMP '$CLEAN_FROM' AND window_start < TIMESTAMP '$SPLIT')" \
      --set "split=$SPLIT" --seed 7 > /dev/null 2>&1
  else
    $NL --db "$DB" train policy --on "$SOURCE" --set "split=$SPLIT" --set "clean_from=$CLEAN_FROM" --seed 7 > /dev/null 2>&1
  fi
fi
$NL --db "$DB" --format csv -c "SELECT verdict, count(*) AS windows, round(count(*) / 0.5) AS per_day,
  count(*) FILTER (WHERE dst_ip = '198.51.100.77') AS planted_upload
  FROM latest_verdicts GROUP BY verdict ORDER BY verdict"
$NL --db "$DB" --format csv -c "SELECT count(*) AS trusted_with_a_new_port_in_the_reason FROM latest_verdicts WHERE verdict = 'Trusted' AND reason LIKE '%remote port not seen%' AND reason NOT LIKE '%note:%'"
$NL --db "$DB" --format csv -c "SELECT count(*) FILTER (WHERE new_port) AS windows_with_a_port_not_in_the_baseline, count(*) AS windows FROM latest_verdicts"
