//! Differences between two sequences (lines of two texts, characters of two renderings),
//! and the hunks of a unified diff over lines.
//!
//! Myers' greedy algorithm after trimming what both ends share: plans and drift reports
//! diff small files whose edits are few, and renderings with and without a secret differ
//! only where the secret went. The edit distance it searches is capped (`MAX_EDITS`): two
//! texts further apart than that are shown as one replacement, which is what a reader gets
//! from such a diff anyway, and keeps time and memory bounded whatever the input. Hunks
//! follow the unified format as `diff -u` and Python's difflib write it.

/// What happened to one element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equal,
    Delete,
    Insert,
}

/// One element of the edit script: for `Equal` and `Delete` an index into the old
/// sequence, for `Insert` an index into the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edit {
    pub op: Op,
    pub old: usize,
    pub new: usize,
}

/// Most edits searched for before the rest is taken as one replacement. The search keeps a
/// row of 2d+3 positions per edit count d: at this cap about a million positions (8 MB).
const MAX_EDITS: usize = 1_000;

/// The edit script from `old` to `new`: every element of both, in order, deletions before
/// insertions where both happen between the same equal elements.
pub fn diff<T: PartialEq>(old: &[T], new: &[T]) -> Vec<Edit> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let old_rest = old.get(prefix..).unwrap_or_default();
    let new_rest = new.get(prefix..).unwrap_or_default();
    let suffix = old_rest
        .iter()
        .rev()
        .zip(new_rest.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let old_mid = old_rest.get(..old_rest.len() - suffix).unwrap_or_default();
    let new_mid = new_rest.get(..new_rest.len() - suffix).unwrap_or_default();
    let mut out = Vec::with_capacity(old.len().max(new.len()));
    out.extend((0..prefix).map(|i| Edit {
        op: Op::Equal,
        old: i,
        new: i,
    }));
    let middle =
        myers(old_mid, new_mid).unwrap_or_else(|| replace_all(old_mid.len(), new_mid.len()));
    out.extend(middle.into_iter().map(|e| Edit {
        op: e.op,
        old: e.old + prefix,
        new: e.new + prefix,
    }));
    let (old_end, new_end) = (old.len() - suffix, new.len() - suffix);
    out.extend((0..suffix).map(|i| Edit {
        op: Op::Equal,
        old: old_end + i,
        new: new_end + i,
    }));
    normalize(out)
}

fn replace_all(old_len: usize, new_len: usize) -> Vec<Edit> {
    (0..old_len)
        .map(|i| Edit {
            op: Op::Delete,
            old: i,
            new: 0,
        })
        .chain((0..new_len).map(|j| Edit {
            op: Op::Insert,
            old: old_len,
            new: j,
        }))
        .collect()
}

/// Myers' shortest edit script, or `None` past `MAX_EDITS`. Diagonals are numbered
/// `x - y`, shifted by `shift` so that they index `furthest` (the furthest `x` reached on
/// each diagonal); a row of it is kept per edit count for the walk back.
fn myers<T: PartialEq>(old: &[T], new: &[T]) -> Option<Vec<Edit>> {
    let (old_len, new_len) = (old.len(), new.len());
    if old_len == 0 || new_len == 0 {
        return Some(replace_all(old_len, new_len));
    }
    let most = (old_len + new_len).min(MAX_EDITS);
    let shift = most + 1;
    let mut furthest = vec![0usize; 2 * most + 3];
    let mut rows: Vec<Vec<usize>> = Vec::new();
    for cost in 0..=most {
        // Only the diagonals this round can read back are kept: -cost-1 ..= cost+1.
        rows.push(furthest.get(shift - cost - 1..=shift + cost + 1)?.to_vec());
        for step in (0..=2 * cost).step_by(2) {
            let diagonal = shift + step - cost;
            let before = *furthest.get(diagonal - 1)?;
            let after = *furthest.get(diagonal + 1)?;
            let down = step == 0 || (step != 2 * cost && before < after);
            let mut x = if down { after } else { before + 1 };
            // Off the grid only on a diagonal that cannot lead to the end: give up the search
            // and take the plain replacement rather than trust it.
            let mut y = (x + cost).checked_sub(step)?;
            while let (Some(a), Some(b)) = (old.get(x), new.get(y)) {
                if a != b {
                    break;
                }
                x += 1;
                y += 1;
            }
            *furthest.get_mut(diagonal)? = x;
            if x >= old_len && y >= new_len {
                return walk_back(&rows, shift, (old_len, new_len), cost);
            }
        }
    }
    None
}

/// Walks the saved rows back from the end to the start, collecting the edits.
fn walk_back(
    rows: &[Vec<usize>],
    shift: usize,
    (mut x, mut y): (usize, usize),
    last: usize,
) -> Option<Vec<Edit>> {
    let mut edits = Vec::new();
    for cost in (1..=last).rev() {
        // The row holds diagonals from `shift - cost - 1` on.
        let first = shift - cost - 1;
        let row = rows.get(cost)?;
        let at = |diagonal: usize| row.get(diagonal.checked_sub(first)?).copied();
        let diagonal = (shift + x).checked_sub(y)?;
        let down = diagonal + cost == shift
            || (diagonal != shift + cost && at(diagonal - 1)? < at(diagonal + 1)?);
        let previous = if down { diagonal + 1 } else { diagonal - 1 };
        let prev_x = at(previous)?;
        let prev_y = (prev_x + shift).checked_sub(previous)?;
        while x > prev_x && y > prev_y {
            x -= 1;
            y -= 1;
            edits.push(Edit {
                op: Op::Equal,
                old: x,
                new: y,
            });
        }
        if x == prev_x {
            y = y.checked_sub(1)?;
            edits.push(Edit {
                op: Op::Insert,
                old: x,
                new: y,
            });
        } else {
            x -= 1;
            edits.push(Edit {
                op: Op::Delete,
                old: x,
                new: y,
            });
        }
    }
    while x > 0 && y > 0 {
        x -= 1;
        y -= 1;
        edits.push(Edit {
            op: Op::Equal,
            old: x,
            new: y,
        });
    }
    edits.reverse();
    Some(edits)
}

/// Between two equal elements, deletions first, then insertions.
fn normalize(edits: Vec<Edit>) -> Vec<Edit> {
    let mut out = Vec::with_capacity(edits.len());
    let mut inserts = Vec::new();
    for edit in edits {
        match edit.op {
            Op::Equal => {
                out.append(&mut inserts);
                out.push(edit);
            }
            Op::Delete => out.push(edit),
            Op::Insert => inserts.push(edit),
        }
    }
    out.append(&mut inserts);
    out
}

/// One hunk of a unified diff: its header and its edits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    /// `@@ -1,3 +1,4 @@`.
    pub header: String,
    pub edits: Vec<Edit>,
}

/// The hunks of a unified diff with `context` equal elements around each change.
pub fn hunks(edits: &[Edit], context: usize) -> Vec<Hunk> {
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for (at, _) in edits.iter().enumerate().filter(|(_, e)| e.op != Op::Equal) {
        match groups.last_mut() {
            // Changes with at most twice the context between them share a hunk.
            Some((_, last)) if at - *last <= 2 * context + 1 => *last = at,
            _ => groups.push((at, at)),
        }
    }
    groups
        .into_iter()
        .map(|(first, last)| {
            let start = first.saturating_sub(context);
            let end = (last + context + 1).min(edits.len());
            let slice = edits.get(start..end).unwrap_or_default();
            Hunk {
                header: header(slice),
                edits: slice.to_vec(),
            }
        })
        .collect()
}

fn header(edits: &[Edit]) -> String {
    let old: Vec<usize> = edits
        .iter()
        .filter(|e| e.op != Op::Insert)
        .map(|e| e.old)
        .collect();
    let new: Vec<usize> = edits
        .iter()
        .filter(|e| e.op != Op::Delete)
        .map(|e| e.new)
        .collect();
    // An empty side starts where its first edit would be.
    let old_start = old
        .first()
        .copied()
        .unwrap_or_else(|| edits.first().map_or(0, |e| e.old));
    let new_start = new
        .first()
        .copied()
        .unwrap_or_else(|| edits.first().map_or(0, |e| e.new));
    format!(
        "@@ -{} +{} @@",
        range(old_start, old.len()),
        range(new_start, new.len())
    )
}

/// `start,len` 1-based; `start` alone for one line; the line before for none.
fn range(start: usize, len: usize) -> String {
    match len {
        0 => format!("{start},0"),
        1 => format!("{}", start + 1),
        _ => format!("{},{len}", start + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(old: &str, new: &str) -> String {
        let (a, b): (Vec<char>, Vec<char>) = (old.chars().collect(), new.chars().collect());
        diff(&a, &b)
            .iter()
            .map(|e| match e.op {
                Op::Equal => format!("={}", a[e.old]),
                Op::Delete => format!("-{}", a[e.old]),
                Op::Insert => format!("+{}", b[e.new]),
            })
            .collect()
    }

    #[test]
    fn scripts_are_shortest_and_list_every_element() {
        assert_eq!(script("abc", "abc"), "=a=b=c");
        assert_eq!(script("abc", "axc"), "=a-b+x=c");
        assert_eq!(script("", "ab"), "+a+b");
        assert_eq!(script("ab", ""), "-a-b");
        assert_eq!(script("abcabba", "cbabac").matches(['-', '+']).count(), 5);
        assert_eq!(script("kitten", "sitting").matches(['-', '+']).count(), 5);
    }

    /// Applying a script to `old` gives `new`, and every element appears once, in order.
    #[test]
    fn every_script_rebuilds_the_new_sequence() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        for _ in 0..2_000 {
            let old: Vec<u64> = (0..next(30)).map(|_| next(4)).collect();
            let new: Vec<u64> = (0..next(30)).map(|_| next(4)).collect();
            let edits = diff(&old, &new);
            let mut rebuilt = Vec::new();
            let (mut seen_old, mut seen_new) = (0, 0);
            for edit in &edits {
                match edit.op {
                    Op::Equal => {
                        assert_eq!((edit.old, edit.new), (seen_old, seen_new));
                        assert_eq!(old[edit.old], new[edit.new]);
                        rebuilt.push(old[edit.old]);
                        seen_old += 1;
                        seen_new += 1;
                    }
                    Op::Delete => {
                        assert_eq!(edit.old, seen_old);
                        seen_old += 1;
                    }
                    Op::Insert => {
                        assert_eq!(edit.new, seen_new);
                        rebuilt.push(new[edit.new]);
                        seen_new += 1;
                    }
                }
            }
            assert_eq!((seen_old, seen_new), (old.len(), new.len()));
            assert_eq!(rebuilt, new, "{old:?} → {new:?}");
        }
    }

    #[test]
    fn long_unrelated_inputs_become_one_replacement() {
        let a: Vec<u32> = (0..5_000).collect();
        let b: Vec<u32> = (10_000..15_000).collect();
        let edits = diff(&a, &b);
        assert_eq!(edits.len(), 10_000);
        assert!(edits[..5_000].iter().all(|e| e.op == Op::Delete));
    }

    #[test]
    fn hunks_group_changes_with_context_and_number_ranges_like_diff_u() {
        let a: Vec<u32> = (1..=20).collect();
        let mut b = a.clone();
        b[1] = 99;
        b[17] = 98;
        let hunks = hunks(&diff(&a, &b), 3);
        let headers: Vec<&str> = hunks.iter().map(|h| h.header.as_str()).collect();
        assert_eq!(headers, ["@@ -1,5 +1,5 @@", "@@ -15,6 +15,6 @@"]);
        let one = hunks_of(&[1], &[2]);
        assert_eq!(one, ["@@ -1 +1 @@"]);
        assert_eq!(hunks_of(&[], &[1, 2]), ["@@ -0,0 +1,2 @@"]);
        assert_eq!(hunks_of(&[1, 2], &[1, 2, 3]), ["@@ -1,2 +1,3 @@"]);
    }

    fn hunks_of(a: &[u32], b: &[u32]) -> Vec<String> {
        hunks(&diff(a, b), 3)
            .into_iter()
            .map(|h| h.header)
            .collect()
    }
}
