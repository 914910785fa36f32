//! Biometric error statistics from genuine and impostor comparison scores. Pure maths, no
//! I/O; shared by the evaluation tool and (later) the service's live metrics.
//!
//! Convention: a comparison is a *match* when `score >= threshold`.
//! FAR (FMR) = share of impostor scores that match; FRR (FNMR) = share of genuine scores
//! that do not.

use serde::Serialize;

/// Genuine (same person) and impostor (different people) scores, sorted ascending.
#[derive(Debug, Clone)]
pub struct ScoreSet {
    genuine: Vec<f64>,
    impostor: Vec<f64>,
}

/// FAR and FRR at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ErrorRates {
    pub threshold: f64,
    pub far: f64,
    pub frr: f64,
}

/// True accept rate at a target FAR, with whether the data can resolve that FAR at all.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TarAtFar {
    pub far_target: f64,
    /// `None` when there are fewer impostor comparisons than 1 / target: not even one false
    /// accept could be observed, so the rate cannot be resolved.
    pub tar: Option<f64>,
    pub threshold: Option<f64>,
    /// Doddington's rule of 30: at least 30 / target impostor comparisons, so that the
    /// observed FAR is within about ±30% of the true one at 90% confidence.
    pub rule_of_30_met: bool,
}

/// A two-sided confidence interval for a proportion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// The normal quantile of a two-sided 95% interval.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// A threshold and the FAR it was measured to give, with the evidence behind the figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FarPoint {
    pub threshold: f64,
    /// The point estimate: false accepts / impostor comparisons.
    pub far: f64,
    /// Its 95% Wilson interval.
    pub interval: Interval,
    pub false_accepts: usize,
    pub impostors: usize,
}

/// Wilson score interval for `errors` out of `trials` at normal quantile `z` (1.96 for 95%).
/// Unlike the normal approximation it stays inside [0, 1] and is informative at 0 errors.
pub fn wilson_interval(errors: usize, trials: usize, z: f64) -> Interval {
    if trials == 0 {
        return Interval { low: 0.0, high: 1.0 };
    }
    let n = trials as f64;
    let p = errors as f64 / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // At 0 (or all) errors the bound is exactly 0 (or 1); the formula leaves rounding dust.
    let low = if errors == 0 { 0.0 } else { (centre - half).max(0.0) };
    let high = if errors == trials { 1.0 } else { (centre + half).min(1.0) };
    Interval { low, high }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Eer {
    /// Equal error rate, interpolated between the two thresholds where FAR and FRR cross.
    pub rate: f64,
    pub threshold: f64,
}

impl ScoreSet {
    /// Drops non-finite scores; both lists must end up non-empty.
    pub fn new(genuine: Vec<f64>, impostor: Vec<f64>) -> Result<Self, &'static str> {
        let clean = |mut v: Vec<f64>| {
            v.retain(|s| s.is_finite());
            v.sort_by(f64::total_cmp);
            v
        };
        let (genuine, impostor) = (clean(genuine), clean(impostor));
        if genuine.is_empty() || impostor.is_empty() {
            return Err("need at least one genuine and one impostor score");
        }
        Ok(Self { genuine, impostor })
    }

    pub fn genuine(&self) -> &[f64] {
        &self.genuine
    }

    pub fn impostor(&self) -> &[f64] {
        &self.impostor
    }

    /// Share of impostor scores at or above `threshold`.
    pub fn far(&self, threshold: f64) -> f64 {
        let below = self.impostor.partition_point(|&s| s < threshold);
        (self.impostor.len() - below) as f64 / self.impostor.len() as f64
    }

    /// Share of genuine scores below `threshold`.
    pub fn frr(&self, threshold: f64) -> f64 {
        self.genuine.partition_point(|&s| s < threshold) as f64 / self.genuine.len() as f64
    }

    pub fn rates(&self, threshold: f64) -> ErrorRates {
        ErrorRates { threshold, far: self.far(threshold), frr: self.frr(threshold) }
    }

    /// Every distinct score as a threshold, plus one above the maximum (FAR = 0), ascending.
    pub fn thresholds(&self) -> Vec<f64> {
        let mut all: Vec<f64> = self.genuine.iter().chain(&self.impostor).copied().collect();
        all.sort_by(f64::total_cmp);
        all.dedup();
        let top = *all.last().expect("non-empty");
        all.push(top + 1e-9_f64.max(top.abs() * 1e-12));
        all
    }

    /// The ROC/DET curve: FAR and FRR at every threshold, ascending threshold.
    pub fn curve(&self) -> Vec<ErrorRates> {
        self.thresholds().into_iter().map(|t| self.rates(t)).collect()
    }

    /// Equal error rate with linear interpolation between the thresholds where FAR − FRR
    /// changes sign.
    pub fn eer(&self) -> Eer {
        let curve = self.curve();
        // FAR falls and FRR rises with the threshold: find the first point where FRR ≥ FAR.
        let i = curve.iter().position(|r| r.frr >= r.far).unwrap_or(curve.len() - 1);
        if i == 0 {
            let r = curve[0];
            return Eer { rate: (r.far + r.frr) / 2.0, threshold: r.threshold };
        }
        let (a, b) = (curve[i - 1], curve[i]);
        let (da, db) = (a.far - a.frr, b.far - b.frr);
        let t = if (da - db).abs() < f64::EPSILON { 0.5 } else { da / (da - db) };
        Eer { rate: a.far + t * (b.far - a.far), threshold: a.threshold + t * (b.threshold - a.threshold) }
    }

    /// The lowest threshold whose FAR does not exceed `target` (so FRR is as low as the
    /// target allows).
    pub fn threshold_for_far(&self, target: f64) -> f64 {
        self.thresholds().into_iter().find(|&t| self.far(t) <= target).expect("the last threshold has FAR 0")
    }

    /// The lowest threshold at which the upper end of the 95% Wilson interval of the FAR is at
    /// most `target`: a threshold whose FAR this data shows to be under the target, not one
    /// whose estimate merely touches it. `None` when the data cannot show it even with no
    /// false accept at all (fewer than about 3.84 / `target` impostor comparisons).
    pub fn conservative_threshold_for_far(&self, target: f64) -> Option<FarPoint> {
        let n = self.impostor.len();
        let upper = |k: usize| wilson_interval(k, n, Z_95).high;
        if upper(0) > target {
            return None;
        }
        // The upper bound grows with the false accepts: the most the target allows.
        let mut allowed = 0;
        while allowed < n && upper(allowed + 1) <= target {
            allowed += 1;
        }
        let threshold = self
            .thresholds()
            .into_iter()
            .find(|&t| self.false_accepts(t) <= allowed)
            .expect("the last threshold has no false accept");
        Some(self.far_point(threshold))
    }

    /// The FAR at `threshold` with its evidence: false accepts, impostor comparisons and the 95%
    /// Wilson interval.
    pub fn far_point(&self, threshold: f64) -> FarPoint {
        let false_accepts = self.false_accepts(threshold);
        let impostors = self.impostor.len();
        FarPoint {
            threshold,
            far: false_accepts as f64 / impostors as f64,
            interval: wilson_interval(false_accepts, impostors, Z_95),
            false_accepts,
            impostors,
        }
    }

    fn false_accepts(&self, threshold: f64) -> usize {
        self.impostor.len() - self.impostor.partition_point(|&s| s < threshold)
    }

    /// TAR (1 − FRR) at the lowest threshold whose FAR is at most `target`.
    pub fn tar_at_far(&self, target: f64) -> TarAtFar {
        let n = self.impostor.len() as f64;
        let resolvable = n * target >= 1.0;
        let threshold = resolvable.then(|| self.threshold_for_far(target));
        TarAtFar {
            far_target: target,
            tar: threshold.map(|t| 1.0 - self.frr(t)),
            threshold,
            rule_of_30_met: n * target >= 30.0,
        }
    }

    /// 95% Wilson intervals of FAR and FRR at `threshold`.
    pub fn confidence_95(&self, threshold: f64) -> (Interval, Interval) {
        let false_accepts = (self.far(threshold) * self.impostor.len() as f64).round() as usize;
        let false_rejects = (self.frr(threshold) * self.genuine.len() as f64).round() as usize;
        (
            wilson_interval(false_accepts, self.impostor.len(), Z_95),
            wilson_interval(false_rejects, self.genuine.len(), Z_95),
        )
    }

    /// The smallest FAR this many impostor comparisons can resolve: one false accept.
    pub fn far_resolution(&self) -> f64 {
        1.0 / self.impostor.len() as f64
    }

    /// Share of correct decisions at `threshold` (genuine matched, impostor refused).
    pub fn accuracy(&self, threshold: f64) -> f64 {
        let correct_genuine = self.genuine.len() as f64 * (1.0 - self.frr(threshold));
        let correct_impostor = self.impostor.len() as f64 * (1.0 - self.far(threshold));
        (correct_genuine + correct_impostor) / (self.genuine.len() + self.impostor.len()) as f64
    }

    /// The threshold with the best accuracy on these scores (ties: the lowest).
    pub fn best_accuracy_threshold(&self) -> f64 {
        let mut best = (f64::NEG_INFINITY, 0.0);
        for t in self.thresholds() {
            let acc = self.accuracy(t);
            if acc > best.0 {
                best = (acc, t);
            }
        }
        best.1
    }
}

/// Accuracy measured by k-fold cross-validation, as LFW reports it: for each fold, the
/// best-accuracy threshold of the other folds is applied to the held-out fold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CrossValidation {
    pub folds: Vec<FoldResult>,
    pub mean_accuracy: f64,
    /// Standard error of the mean over the folds (sample standard deviation / sqrt(k)).
    pub standard_error: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FoldResult {
    /// Chosen on the other folds only.
    pub threshold: f64,
    pub accuracy: f64,
}

/// `folds[k]` holds fold k's genuine and impostor scores. Needs at least two folds, each
/// with at least one genuine and one impostor score.
pub fn cross_validate(folds: &[(Vec<f64>, Vec<f64>)]) -> Result<CrossValidation, &'static str> {
    if folds.len() < 2 {
        return Err("cross-validation needs at least two folds");
    }
    let mut results = Vec::with_capacity(folds.len());
    for (k, (genuine, impostor)) in folds.iter().enumerate() {
        let held_out = ScoreSet::new(genuine.clone(), impostor.clone())?;
        let others = folds.iter().enumerate().filter(|(i, _)| *i != k).map(|(_, f)| f);
        let train = ScoreSet::new(
            others.clone().flat_map(|f| f.0.iter().copied()).collect(),
            others.flat_map(|f| f.1.iter().copied()).collect(),
        )?;
        let threshold = train.best_accuracy_threshold();
        results.push(FoldResult { threshold, accuracy: held_out.accuracy(threshold) });
    }
    let k = results.len() as f64;
    let mean = results.iter().map(|r| r.accuracy).sum::<f64>() / k;
    let variance = results.iter().map(|r| (r.accuracy - mean).powi(2)).sum::<f64>() / (k - 1.0);
    Ok(CrossValidation { folds: results, mean_accuracy: mean, standard_error: (variance / k).sqrt() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100,000 impostor scores spread evenly over [0, 1), and a few genuine ones.
    fn uniform_impostors(n: usize) -> ScoreSet {
        let impostor = (0..n).map(|i| i as f64 / n as f64).collect();
        ScoreSet::new(vec![0.5, 0.99, 0.999], impostor).unwrap()
    }

    #[test]
    fn the_conservative_threshold_keeps_the_whole_interval_under_the_target_and_no_more() {
        let set = uniform_impostors(100_000);
        for target in [1e-2, 1e-3, 1e-4] {
            let point = set.threshold_for_far(target);
            let conservative = set.conservative_threshold_for_far(target).unwrap();
            assert!(conservative.threshold >= point, "{target}: below the point threshold");
            assert!(conservative.interval.high <= target, "{target}: {conservative:?}");
            assert!(conservative.far < target);
            // One more false accept and the interval would reach past the target.
            let k = conservative.false_accepts;
            assert!(
                wilson_interval(k + 1, 100_000, Z_95).high > target,
                "{target}: not the lowest threshold"
            );
            assert_eq!(conservative.impostors, 100_000);
        }
        // Known answer: at 1e-3 of 100,000 comparisons, 100 false accepts make the point
        // estimate; by hand, Wilson's upper bound is 0.000995 at 80 and 0.0010065 at 81, so
        // 80 is the most allowed: the threshold is the 80th-highest impostor score, 0.9992.
        let at_1e3 = set.conservative_threshold_for_far(1e-3).unwrap();
        assert_eq!(at_1e3.false_accepts, 80);
        assert!((at_1e3.threshold - 0.9992).abs() < 1e-9, "{}", at_1e3.threshold);
        assert_eq!(set.far_point(set.threshold_for_far(1e-3)).false_accepts, 100);
    }

    #[test]
    fn a_target_too_small_for_the_data_has_no_conservative_threshold() {
        // No false accept among 3,000 comparisons bounds the FAR at 0.13%, not 0.1%.
        assert!(uniform_impostors(3_000).conservative_threshold_for_far(1e-3).is_none());
        let enough = uniform_impostors(4_000).conservative_threshold_for_far(1e-3).unwrap();
        assert_eq!(enough.false_accepts, 0);
        assert!(enough.threshold > 0.99975, "above every impostor: {}", enough.threshold);
    }

    fn set() -> ScoreSet {
        // Hand-computed: genuine 0.4 0.6 0.7 0.9, impostor 0.1 0.2 0.3 0.5 0.65
        ScoreSet::new(vec![0.9, 0.4, 0.7, 0.6], vec![0.3, 0.1, 0.5, 0.2, 0.65]).unwrap()
    }

    #[test]
    fn far_and_frr_at_hand_computed_thresholds() {
        let s = set();
        assert_eq!(s.far(0.5), 2.0 / 5.0);
        assert_eq!(s.frr(0.5), 1.0 / 4.0);
        assert_eq!(s.far(0.66), 0.0);
        assert_eq!(s.frr(0.66), 2.0 / 4.0);
        assert_eq!(s.far(0.0), 1.0);
        assert_eq!(s.frr(0.0), 0.0);
    }

    #[test]
    fn threshold_for_far_is_the_lowest_meeting_the_target() {
        let s = set();
        assert_eq!(s.threshold_for_far(0.2), 0.6);
        assert_eq!(s.threshold_for_far(0.0), 0.7);
        assert_eq!(s.threshold_for_far(1.0), 0.1);
    }

    #[test]
    fn eer_of_separable_scores_is_zero() {
        let s = ScoreSet::new(vec![0.8, 0.9], vec![0.1, 0.2]).unwrap();
        assert_eq!(s.eer().rate, 0.0);
        assert_eq!(s.accuracy(s.best_accuracy_threshold()), 1.0);
    }

    #[test]
    fn eer_interpolates_between_crossing_points() {
        // At t=0.5: FAR 2/4, FRR 1/4. At t=0.7 (next score): FAR 1/4, FRR 2/4. The lines
        // FAR(t) and FRR(t) between them cross halfway: rate 3/8 at t=0.6.
        let s = ScoreSet::new(vec![0.3, 0.5, 0.8, 0.9], vec![0.1, 0.2, 0.5, 0.7]).unwrap();
        let eer = s.eer();
        assert!((eer.rate - 0.375).abs() < 1e-12, "{eer:?}");
        assert!((eer.threshold - 0.6).abs() < 1e-12, "{eer:?}");
    }

    #[test]
    fn wilson_interval_matches_hand_computed_values() {
        // 0 of 500: upper bound 3.8415 / (500 + 3.8415) = 0.007624 (the "rule of 3" is 0.006).
        let i = wilson_interval(0, 500, 1.96);
        assert_eq!(i.low, 0.0);
        assert!((i.high - 3.8416 / 503.8416).abs() < 1e-6, "{i:?}");
        // 8 of 500 (1.6%): centre (0.016 + 0.0038416) / 1.0076832 = 0.019690; half-width
        // 1.96 / 1.0076832 * sqrt(0.016 * 0.984 / 500 + 3.8416 / 1e6) = 0.011561.
        let i = wilson_interval(8, 500, 1.96);
        assert!((i.low - 0.008129).abs() < 1e-5 && (i.high - 0.031251).abs() < 1e-5, "{i:?}");
    }

    #[test]
    fn tar_at_far_says_when_the_impostors_are_too_few() {
        let s = set(); // 5 impostor scores
        let coarse = s.tar_at_far(0.2);
        assert_eq!(coarse.threshold, Some(0.6));
        assert_eq!(coarse.tar, Some(0.75));
        assert!(!coarse.rule_of_30_met);
        let fine = s.tar_at_far(1e-3);
        assert_eq!((fine.tar, fine.threshold), (None, None));
    }

    #[test]
    fn cross_validation_takes_each_threshold_from_the_other_folds() {
        // Fold 0 alone would pick a threshold in (0.5, 0.6]; folds 1 and 2 together pick
        // 0.8 (their best split), which on fold 0 rejects genuine 0.6 and 0.7: 2 of 4 wrong.
        let folds = vec![
            (vec![0.6, 0.7], vec![0.4, 0.5]),
            (vec![0.8, 0.9], vec![0.7, 0.75]),
            (vec![0.85, 0.95], vec![0.1, 0.2]),
        ];
        let cv = cross_validate(&folds).unwrap();
        assert_eq!(cv.folds[0], FoldResult { threshold: 0.8, accuracy: 0.5 });
        // Folds 0 and 2 separate at 0.6, which accepts fold 1's impostors 0.7 and 0.75.
        assert_eq!(cv.folds[1], FoldResult { threshold: 0.6, accuracy: 0.5 });
        // Folds 0 and 1 tie at 6/8 for 0.6 and 0.8 (the lowest wins); fold 2 is all correct.
        assert_eq!(cv.folds[2], FoldResult { threshold: 0.6, accuracy: 1.0 });
        assert!((cv.mean_accuracy - cv.folds.iter().map(|f| f.accuracy).sum::<f64>() / 3.0).abs() < 1e-12);
        assert!(cross_validate(&folds[..1]).is_err());
    }

    #[test]
    fn empty_lists_are_refused() {
        assert!(ScoreSet::new(vec![], vec![0.1]).is_err());
        assert!(ScoreSet::new(vec![f64::NAN], vec![0.1]).is_err());
    }
}

/// Presentation attack detection metrics (ISO/IEC 30107-3). Scores are "liveness": higher
/// means more likely a live person; a presentation is accepted as bona fide when
/// `score >= threshold`.
pub mod pad {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use crate::ScoreSet;

    #[derive(Debug, Clone, Serialize)]
    pub struct PadReport {
        pub threshold: f64,
        /// Attack presentations wrongly accepted, per attack type (PAI species).
        pub apcer_by_type: BTreeMap<String, f64>,
        /// The worst type's APCER, as the standard reports it.
        pub apcer: f64,
        /// Bona fide presentations wrongly rejected.
        pub bpcer: f64,
        /// (APCER + BPCER) / 2.
        pub acer: f64,
        /// BPCER at the threshold where the worst type's APCER is at most 5% / 1%.
        pub bpcer_at_apcer_5pct: f64,
        pub bpcer_at_apcer_1pct: f64,
        pub threshold_at_apcer_5pct: f64,
        pub threshold_at_apcer_1pct: f64,
        pub bona_fide: usize,
        pub attacks_by_type: BTreeMap<String, usize>,
    }

    /// `attacks` maps an attack type to its scores. Fails when a list is empty.
    pub fn evaluate(
        bona_fide: &[f64],
        attacks: &BTreeMap<String, Vec<f64>>,
        threshold: f64,
    ) -> Result<PadReport, &'static str> {
        if attacks.is_empty() {
            return Err("need at least one attack type");
        }
        let sets = attacks
            .iter()
            .map(|(kind, scores)| Ok((kind.clone(), ScoreSet::new(bona_fide.to_vec(), scores.clone())?)))
            .collect::<Result<BTreeMap<_, _>, &'static str>>()?;
        let any = sets.values().next().expect("non-empty");
        let apcer_by_type: BTreeMap<String, f64> =
            sets.iter().map(|(kind, set)| (kind.clone(), set.far(threshold))).collect();
        let apcer = apcer_by_type.values().copied().fold(0.0, f64::max);
        let bpcer = any.frr(threshold);
        // The worst type sets the threshold: the highest of the per-type thresholds.
        let threshold_at =
            |target: f64| sets.values().map(|s| s.threshold_for_far(target)).fold(f64::MIN, f64::max);
        let (t5, t1) = (threshold_at(0.05), threshold_at(0.01));
        Ok(PadReport {
            threshold,
            apcer_by_type,
            apcer,
            bpcer,
            acer: (apcer + bpcer) / 2.0,
            bpcer_at_apcer_5pct: any.frr(t5),
            bpcer_at_apcer_1pct: any.frr(t1),
            threshold_at_apcer_5pct: t5,
            threshold_at_apcer_1pct: t1,
            bona_fide: any.genuine().len(),
            attacks_by_type: attacks.iter().map(|(k, v)| (k.clone(), v.len())).collect(),
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn hand_computed_pad_rates() {
            // Bona fide 0.9 0.8 0.3 0.05; print 0.1 0.2 0.6; replay 0.01 0.02.
            let bona_fide = [0.9, 0.8, 0.3, 0.05];
            let attacks = BTreeMap::from([
                ("print".to_string(), vec![0.1, 0.2, 0.6]),
                ("replay".to_string(), vec![0.01, 0.02]),
            ]);
            let r = evaluate(&bona_fide, &attacks, 0.25).unwrap();
            assert_eq!(r.apcer_by_type["print"], 1.0 / 3.0);
            assert_eq!(r.apcer_by_type["replay"], 0.0);
            assert_eq!(r.apcer, 1.0 / 3.0);
            assert_eq!(r.bpcer, 0.25);
            assert!((r.acer - (1.0 / 3.0 + 0.25) / 2.0).abs() < 1e-12);
            // APCER <= 1% needs every print refused: threshold just above 0.6 → BPCER 2/4.
            assert_eq!(r.threshold_at_apcer_1pct, 0.8);
            assert_eq!(r.bpcer_at_apcer_1pct, 0.5);
        }
    }
}
