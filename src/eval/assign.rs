//! Minimum-cost assignment (the Hungarian method, in its shortest augmenting path form with
//! row and column potentials), O(n² m) for n rows and m columns.

/// For a `rows` x `cols` cost matrix (row-major), the column assigned to each row, minimising
/// the total cost, every row assigned when `rows <= cols` and every column when
/// `rows > cols` (the other rows get `None`).
pub fn min_cost_assignment(cost: &[f64], rows: usize, cols: usize) -> Vec<Option<usize>> {
    assert_eq!(cost.len(), rows * cols, "cost matrix is not rows x cols");
    if rows == 0 || cols == 0 {
        return vec![None; rows];
    }
    if rows > cols {
        // Solve the transpose, where every (former) column gets a row.
        let t: Vec<f64> = (0..cols * rows)
            .map(|i| cost[(i % rows) * cols + i / rows])
            .collect();
        let by_col = min_cost_assignment(&t, cols, rows);
        let mut by_row = vec![None; rows];
        for (c, r) in by_col.into_iter().enumerate() {
            if let Some(r) = r {
                by_row[r] = Some(c);
            }
        }
        return by_row;
    }
    let (n, m) = (rows, cols);
    let at = |r: usize, c: usize| cost[(r - 1) * m + (c - 1)];
    // 1-based: column 0 is the virtual start of each augmenting path.
    let mut u = vec![0.0; n + 1];
    let mut v = vec![0.0; m + 1];
    let mut row_of = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for r in 1..=n {
        row_of[0] = r;
        let mut c0 = 0;
        let mut minv = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[c0] = true;
            let r0 = row_of[c0];
            let mut delta = f64::INFINITY;
            let mut c1 = 0;
            for c in 1..=m {
                if used[c] {
                    continue;
                }
                let reduced = at(r0, c) - u[r0] - v[c];
                if reduced < minv[c] {
                    minv[c] = reduced;
                    way[c] = c0;
                }
                if minv[c] < delta {
                    delta = minv[c];
                    c1 = c;
                }
            }
            for c in 0..=m {
                if used[c] {
                    u[row_of[c]] += delta;
                    v[c] -= delta;
                } else {
                    minv[c] -= delta;
                }
            }
            c0 = c1;
            if row_of[c0] == 0 {
                break;
            }
        }
        // Flip the path back to the start.
        loop {
            let c1 = way[c0];
            row_of[c0] = row_of[c1];
            c0 = c1;
            if c0 == 0 {
                break;
            }
        }
    }
    let mut by_row = vec![None; n];
    for c in 1..=m {
        if row_of[c] != 0 {
            by_row[row_of[c] - 1] = Some(c - 1);
        }
    }
    by_row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(cost: &[f64], cols: usize, a: &[Option<usize>]) -> f64 {
        a.iter()
            .enumerate()
            .filter_map(|(r, c)| c.map(|c| cost[r * cols + c]))
            .sum()
    }

    /// The best total over every way to give each row of the smaller side a distinct partner.
    fn brute_force(cost: &[f64], rows: usize, cols: usize) -> f64 {
        fn go(cost: &[f64], cols: usize, r: usize, rows: usize, used: &mut Vec<bool>) -> f64 {
            if r == rows {
                return 0.0;
            }
            let mut best = f64::INFINITY;
            for c in 0..cols {
                if !used[c] {
                    used[c] = true;
                    best = best.min(cost[r * cols + c] + go(cost, cols, r + 1, rows, used));
                    used[c] = false;
                }
            }
            best
        }
        if rows <= cols {
            go(cost, cols, 0, rows, &mut vec![false; cols])
        } else {
            let t: Vec<f64> = (0..cols * rows)
                .map(|i| cost[(i % rows) * cols + i / rows])
                .collect();
            go(&t, rows, 0, cols, &mut vec![false; rows])
        }
    }

    #[test]
    fn a_known_matrix() {
        // Taking the cheapest pair first, (0, 0) = 1, forces (1, 1) = 9: 10 in all; the
        // optimum crosses over for 2 + 2.
        let cost = [1.0, 2.0, 2.0, 9.0];
        let a = min_cost_assignment(&cost, 2, 2);
        assert_eq!(a, [Some(1), Some(0)]);
        assert_eq!(total(&cost, 2, &a), 4.0);
        let cost = [4.0, 1.0, 3.0, 2.0, 0.0, 5.0, 3.0, 2.0, 2.0];
        assert_eq!(total(&cost, 3, &min_cost_assignment(&cost, 3, 3)), 5.0);
    }

    #[test]
    fn matches_brute_force_on_small_matrices_of_every_shape() {
        // A small deterministic generator, so a failure can be replayed.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 1000) as f64 / 100.0
        };
        for rows in 1..=5 {
            for cols in 1..=5 {
                for _ in 0..20 {
                    let cost: Vec<f64> = (0..rows * cols).map(|_| next()).collect();
                    let a = min_cost_assignment(&cost, rows, cols);
                    let assigned = a.iter().flatten().count();
                    assert_eq!(assigned, rows.min(cols));
                    let mut seen = vec![false; cols];
                    for c in a.iter().flatten() {
                        assert!(!seen[*c], "column {c} used twice");
                        seen[*c] = true;
                    }
                    let want = brute_force(&cost, rows, cols);
                    let got = total(&cost, cols, &a);
                    assert!((got - want).abs() < 1e-9, "{rows}x{cols}: {got} vs {want}");
                }
            }
        }
        assert!(min_cost_assignment(&[], 0, 3).is_empty());
        assert_eq!(min_cost_assignment(&[], 2, 0), [None, None]);
    }
}
