//! The retention job's list of subjects to erase, merged once for both backends.

use uuid::Uuid;

use crate::DestructionGround;

/// Subjects found by each ground, merged: a subject on several lists is erased once, on the
/// first ground (expired consent, then withdrawn consent, then inactivity).
pub(crate) fn due(
    expired: Vec<(Uuid,)>,
    withdrawn: Vec<(Uuid,)>,
    inactive: Vec<(Uuid,)>,
    limit: usize,
) -> Vec<(Uuid, DestructionGround)> {
    let grounds = [
        (expired, DestructionGround::ConsentExpired),
        (withdrawn, DestructionGround::ConsentWithdrawn),
        (inactive, DestructionGround::InactiveSubject),
    ];
    let mut due: Vec<(Uuid, DestructionGround)> = Vec::new();
    for (ids, ground) in grounds {
        for (id,) in ids {
            if !due.iter().any(|(seen, _)| *seen == id) {
                due.push((id, ground));
            }
        }
    }
    due.truncate(limit);
    due
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_due_on_several_grounds_is_erased_once_on_the_first() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let merged = due(vec![(a,)], vec![(b,), (a,)], vec![(c,), (b,)], 10);
        assert_eq!(
            merged,
            [
                (a, DestructionGround::ConsentExpired),
                (b, DestructionGround::ConsentWithdrawn),
                (c, DestructionGround::InactiveSubject)
            ]
        );
        assert_eq!(due(vec![(a,)], vec![(b,)], vec![(c,)], 2).len(), 2);
    }
}
