//! LFW pairs files: a count line, then `Name i j` (same person) or `Name1 i Name2 j`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub a: PathBuf,
    pub b: PathBuf,
    pub genuine: bool,
}

pub fn image_path(root: &Path, name: &str, index: u32) -> PathBuf {
    root.join(name).join(format!("{name}_{index:04}.jpg"))
}

pub fn parse_pairs(text: &str, root: &Path) -> anyhow::Result<Vec<Pair>> {
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let index =
            |s: &str| s.parse::<u32>().with_context(|| format!("line {}: bad image number {s:?}", n + 1));
        match fields.as_slice() {
            [] => continue,
            [name, i, j] => pairs.push(Pair {
                a: image_path(root, name, index(i)?),
                b: image_path(root, name, index(j)?),
                genuine: true,
            }),
            [name1, i, name2, j] => pairs.push(Pair {
                a: image_path(root, name1, index(i)?),
                b: image_path(root, name2, index(j)?),
                genuine: false,
            }),
            _ => bail!("line {}: expected 3 or 4 fields", n + 1),
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_same_and_different_pairs() {
        let pairs =
            parse_pairs("2\nAbel_Pacheco\t1\t4\nAJ_Cook 1 Marsha_Thomason 1\n", Path::new("/lfw")).unwrap();
        assert_eq!(pairs.len(), 2);
        assert!(pairs[0].genuine && !pairs[1].genuine);
        assert_eq!(pairs[0].b, PathBuf::from("/lfw/Abel_Pacheco/Abel_Pacheco_0004.jpg"));
        assert_eq!(pairs[1].b, PathBuf::from("/lfw/Marsha_Thomason/Marsha_Thomason_0001.jpg"));
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let err = parse_pairs("1\nJust_A_Name 1\n", Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
