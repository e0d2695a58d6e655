#!/bin/sh
# NSL-KDD ROC-AUC with and without --set log1p=true (issue 21). Usage: bench/nslkdd_log1p.sh NETLENS [SEEDS]
# Trains on KDDTrain+ (all rows unlabelled, and the normal rows only), scores KDDTest+;
# iforest's ROC-AUC is evaluation.roc_auc, k-means' is computed from each row's distance to its
# centre (higher = more anomalous) by the rank formula.
set -e
NL=$1; SEEDS=${2:-"0 1 2"}
D=$(cd "$(dirname "$0")/../../shared/data/nsl-kdd" && pwd)
DB=$(mktemp -d)/kdd.duckdb
COLS=$(sed "s/.*/'&'/" "$D/columns.txt" | paste -sd, -)
$NL --db "$DB" -c "CREATE TABLE kdd_train AS SELECT * FROM read_csv('$D/KDDTrain+.txt', header = false, names = [$COLS], sample_size = -1)" \
    -c "CREATE TABLE kdd_test AS SELECT * FROM read_csv('$D/KDDTest+.txt', header = false, names = [$COLS], sample_size = -1)" \
    -c "CREATE TABLE kdd_train_normal AS SELECT * FROM kdd_train WHERE label = 'normal'" > /dev/null
auc() { # table with label and a score column $2
  $NL --db "$DB" --format csv -c "WITH r AS (SELECT label <> 'normal' AS pos, rank() OVER (ORDER BY $2) AS rk FROM $1),
     c AS (SELECT count(*) FILTER (WHERE pos) AS p, count(*) FILTER (WHERE NOT pos) AS n, sum(rk) FILTER (WHERE pos) AS s FROM r)
     SELECT round((s - p * (p + 1) / 2) / (p * n), 4) FROM c" | tail -1
}
for L in false true; do
  for T in kdd_train kdd_train_normal; do
    for S in $SEEDS; do
      $NL --db "$DB" train iforest --on $T --exclude label,difficulty --seed $S --model if_${T}_$L$S --set log1p=$L > /dev/null 2>&1
      $NL --db "$DB" -c "DROP TABLE IF EXISTS s_if" > /dev/null
      $NL --db "$DB" score if_${T}_$L$S --on kdd_test --label label --into s_if > /dev/null 2>&1
      echo "iforest $T log1p=$L seed=$S roc_auc=$(auc s_if score)"
    done
  done
  $NL --db "$DB" train kmeans --on kdd_train_normal --exclude label,difficulty --seed 1 --set k=8 --model km_$L --set log1p=$L > /dev/null 2>&1
  $NL --db "$DB" -c "DROP TABLE IF EXISTS s_km" > /dev/null
  $NL --db "$DB" score km_$L --on kdd_test --into s_km > /dev/null 2>&1
  echo "kmeans-distance kdd_train_normal k=8 log1p=$L roc_auc=$(auc s_km distance)"
done
