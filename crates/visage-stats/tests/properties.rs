//! Invariants of the error statistics on arbitrary score lists.

use proptest::prelude::*;
use visage_stats::ScoreSet;

fn scores() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-1.0f64..1.0, 1..60)
}

proptest! {
    #[test]
    fn far_falls_and_frr_rises_with_the_threshold(genuine in scores(), impostor in scores()) {
        let set = ScoreSet::new(genuine, impostor).unwrap();
        let curve = set.curve();
        for pair in curve.windows(2) {
            prop_assert!(pair[1].far <= pair[0].far);
            prop_assert!(pair[1].frr >= pair[0].frr);
        }
        prop_assert_eq!(curve.first().unwrap().frr, 0.0);
        prop_assert_eq!(curve.last().unwrap().far, 0.0);
    }

    #[test]
    fn eer_lies_between_far_and_frr_where_they_cross(genuine in scores(), impostor in scores()) {
        let set = ScoreSet::new(genuine, impostor).unwrap();
        let eer = set.eer();
        prop_assert!((0.0..=1.0).contains(&eer.rate));
        // Just below and at the crossing threshold, FAR and FRR bracket the EER.
        let curve = set.curve();
        let i = curve.iter().position(|r| r.frr >= r.far).unwrap();
        let lo = curve[i.saturating_sub(1)];
        let hi = curve[i];
        let (min, max) = (lo.far.min(lo.frr).min(hi.far.min(hi.frr)), lo.far.max(lo.frr).max(hi.far.max(hi.frr)));
        prop_assert!(eer.rate >= min - 1e-12 && eer.rate <= max + 1e-12, "{eer:?} not in [{min}, {max}]");
    }

    #[test]
    fn the_threshold_for_a_far_target_meets_it(genuine in scores(), impostor in scores(), target in 0.0f64..1.0) {
        let set = ScoreSet::new(genuine, impostor).unwrap();
        let t = set.threshold_for_far(target);
        prop_assert!(set.far(t) <= target);
        // and it is the lowest such threshold: any lower candidate exceeds the target
        if let Some(lower) = set.thresholds().into_iter().rev().find(|&c| c < t) {
            prop_assert!(set.far(lower) > target);
        }
    }

    #[test]
    fn accuracy_is_the_share_of_correct_decisions(genuine in scores(), impostor in scores(), t in -1.0f64..1.0) {
        let set = ScoreSet::new(genuine.clone(), impostor.clone()).unwrap();
        let correct = genuine.iter().filter(|&&s| s >= t).count() + impostor.iter().filter(|&&s| s < t).count();
        let expected = correct as f64 / (genuine.len() + impostor.len()) as f64;
        prop_assert!((set.accuracy(t) - expected).abs() < 1e-12);
    }
}
