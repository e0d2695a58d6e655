//! Quality of an anomaly run against ground truth: confusion matrix, precision, recall, F1,
//! accuracy and ROC-AUC (positive = labelled anomalous). Pure functions; the caller stores them
//! in `evaluation`.

/// Metrics of one run. Rows whose label is NULL are left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub rows: u64,
    pub positives: u64,
    pub tp: u64,
    pub fp: u64,
    pub tn: u64,
    pub fn_: u64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub accuracy: f64,
    pub roc_auc: Option<f64>,
}

/// Evaluates flags (and scores, higher = more anomalous) against labels. None when no row is
/// labelled.
pub fn evaluate(labels: &[Option<bool>], flagged: &[bool], score: Option<&[f64]>) -> Option<Evaluation> {
    let (mut tp, mut fp, mut tn, mut fn_) = (0u64, 0u64, 0u64, 0u64);
    for (label, &flag) in labels.iter().zip(flagged) {
        match (label, flag) {
            (Some(true), true) => tp += 1,
            (Some(false), true) => fp += 1,
            (Some(false), false) => tn += 1,
            (Some(true), false) => fn_ += 1,
            (None, _) => {}
        }
    }
    let rows = tp + fp + tn + fn_;
    if rows == 0 {
        return None;
    }
    let ratio = |a: u64, b: u64| if b == 0 { None } else { Some(a as f64 / b as f64) };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    let f1 = match (precision, recall) {
        (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
        _ => None,
    };
    Some(Evaluation {
        rows,
        positives: tp + fn_,
        tp,
        fp,
        tn,
        fn_,
        precision,
        recall,
        f1,
        accuracy: (tp + tn) as f64 / rows as f64,
        roc_auc: score.and_then(|s| roc_auc(labels, s)),
    })
}

/// Area under the ROC curve by the Mann-Whitney U statistic: the probability that a random
/// anomalous row scores above a random normal one, ties counted half. None without both classes
/// or with a non-finite score.
pub fn roc_auc(labels: &[Option<bool>], score: &[f64]) -> Option<f64> {
    let mut pairs: Vec<(f64, bool)> = labels
        .iter()
        .zip(score)
        .filter_map(|(l, s)| l.map(|l| (*s, l)))
        .collect();
    if pairs.iter().any(|(s, _)| !s.is_finite()) {
        return None;
    }
    let positives = pairs.iter().filter(|(_, l)| *l).count() as f64;
    let negatives = pairs.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the (tie-averaged, 1-based) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j + 1 < pairs.len() && pairs[j + 1].0 == pairs[i].0 {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += pairs[i..=j].iter().filter(|(_, l)| *l).count() as f64 * average_rank;
        i = j + 1;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_matrix_and_metrics() {
        let labels = [Some(true), Some(true), Some(false), Some(false), Some(false), None];
        let flagged = [true, false, true, false, false, true];
        let e = evaluate(&labels, &flagged, None).unwrap();
        assert_eq!((e.tp, e.fp, e.tn, e.fn_, e.rows, e.positives), (1, 1, 2, 1, 5, 2));
        assert_eq!(e.precision, Some(0.5));
        assert_eq!(e.recall, Some(0.5));
        assert_eq!(e.f1, Some(0.5));
        assert_eq!(e.accuracy, 0.6);
        assert_eq!(e.roc_auc, None);
    }

    #[test]
    fn auc_matches_hand_computed_values() {
        let labels = [Some(false), Some(false), Some(true), Some(true)];
        assert_eq!(roc_auc(&labels, &[0.1, 0.2, 0.8, 0.9]), Some(1.0));
        assert_eq!(roc_auc(&labels, &[0.9, 0.8, 0.2, 0.1]), Some(0.0));
        // One positive ties one negative: (1 + 0.5 + 1 + 1) / 4.
        assert_eq!(roc_auc(&labels, &[0.1, 0.5, 0.5, 0.9]), Some(0.875));
        assert_eq!(roc_auc(&[Some(true), Some(true)], &[0.1, 0.2]), None);
        // scikit-learn: roc_auc_score([0,1,0,1,1], [0.3,0.6,0.6,0.2,0.9]) = 0.5833...
        let labels = [Some(false), Some(true), Some(false), Some(true), Some(true)];
        let auc = roc_auc(&labels, &[0.3, 0.6, 0.6, 0.2, 0.9]).unwrap();
        assert!((auc - 7.0 / 12.0).abs() < 1e-12, "{auc}");
    }

    #[test]
    fn nothing_flagged_has_no_precision() {
        let e = evaluate(&[Some(true), Some(false)], &[false, false], Some(&[0.4, 0.3])).unwrap();
        assert_eq!((e.precision, e.recall, e.f1), (None, Some(0.0), None));
        assert_eq!(e.roc_auc, Some(1.0));
    }
}
