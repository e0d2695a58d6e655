#!/bin/sh
# NSL-KDD ROC-AUC of the ensemble's members (lof, ocsvm, autoencoder) with and without
# --set log1p=true (issue 21, stop 27). Usage: bench/nslkdd_log1p_members.sh NETLENS [STAGES] [SEEDS]
# Each stage is fitted on the normal rows of KDDTrain+ (novelty detection, as scikit-learn's
# LocalOutlierFactor(novelty=True) and OneClassSVM are meant to be used) with its defaults, then
# scores KDDTest+; the figure is evaluation.roc_auc of that score run (positive = attack).
set -e
NL=$1; STAGES=${2:-"lof ocsvm autoencoder"}; SEEDS=${3:-"0 1 2"}
D=$(cd "$(dirname "$0")/../../shared/data/nsl-kdd" && pwd)
DB=$(mktemp -d)/kdd.duckdb
COLS=$(sed "s/.*/'&'/" "$D/columns.txt" | paste -sd, -)
$NL --db "$DB" -c "CREATE TABLE kdd_train AS SELECT * FROM read_csv('$D/KDDTrain+.txt', header = false, names = [$COLS], sample_size = -1)" \
    -c "CREATE TABLE kdd_test AS SELECT * FROM read_csv('$D/KDDTest+.txt', header = false, names = [$COLS], sample_size = -1)" \
    -c "CREATE TABLE kdd_train_normal AS SELECT * FROM kdd_train WHERE label = 'normal'" > /dev/null
for ST in $STAGES; do
  for L in false true; do
    for S in $SEEDS; do
      M=${ST}_${L}_$S
      $NL --db "$DB" train "$ST" --on kdd_train_normal --exclude label,difficulty --seed "$S" --model "$M" --set log1p=$L > /dev/null 2>&1
      $NL --db "$DB" score "$M" --on kdd_test --label label > /dev/null 2>&1
      echo "$ST kdd_train_normal log1p=$L seed=$S roc_auc=$($NL --db "$DB" --format csv -c "SELECT round(e.roc_auc, 4) FROM evaluation e JOIN model_runs r USING (run_id) WHERE r.kind = 'score' AND r.model = '$M'" | tail -1)"
    done
  done
done
