//! One-pass, bounded-memory reductions of a point stream whose range is not known in advance.
//!
//! A [`Grid`] is `n` equal buckets over `[origin, origin + n·width)`. A value outside it doubles the grid towards
//! the value (merging neighbouring buckets pairwise) until it fits, so after any number of values the grid covers
//! them all with at least half of its buckets in use. Each bucket keeps a mergeable summary: the four extreme
//! points of M4 for lines ([`M4`]), or a count for scatter density.

/// Equal-width buckets over a range that doubles to take in values outside it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    pub origin: f64,
    pub width: f64,
    pub n: usize,
}

/// How a grid grew: each doubling either kept the origin (`Right`) or moved it left by the old span (`Left`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doubling {
    Right,
    Left,
}

impl Grid {
    /// A grid of `n` buckets (an even number) fitted to `[lo, hi]`.
    pub fn fitted(lo: f64, hi: f64, n: usize) -> Self {
        let n = n.max(2) & !1;
        let span = hi - lo;
        // A single value (or a range too small to split) still needs a width; anything positive that keeps
        // `lo + n·width > hi` works, the grid doubles from there.
        let floor = lo.abs().max(hi.abs()).max(1.0) * 1e-9;
        let width = (span / n as f64).max(floor) * (1.0 + 1e-9);
        Self {
            origin: lo,
            width,
            n,
        }
    }

    pub fn end(&self) -> f64 {
        self.origin + self.width * self.n as f64
    }

    /// The bucket of `v`, or `None` when `v` is outside the grid.
    pub fn index(&self, v: f64) -> Option<usize> {
        let i = ((v - self.origin) / self.width).floor();
        (i >= 0.0 && i < self.n as f64).then_some(i as usize)
    }

    /// The start of bucket `i`.
    pub fn start(&self, i: usize) -> f64 {
        self.origin + self.width * i as f64
    }

    /// Doubles the grid once towards `v` (which must be finite and outside it).
    pub fn double_towards(&mut self, v: f64) -> Doubling {
        let span = self.width * self.n as f64;
        self.width *= 2.0;
        if v < self.origin {
            self.origin -= span;
            Doubling::Left
        } else {
            Doubling::Right
        }
    }
}

/// A per-bucket summary that two neighbouring buckets can be merged into.
pub trait Merge: Default + Clone {
    fn merge(&mut self, other: &Self);
}

/// Rebuckets `cells` after one doubling of an axis of `n` buckets: new bucket `j` is old buckets `2j` and `2j+1`
/// (`Right`), shifted up by `n/2` (`Left`). The axis runs through `lines` lines of the (row-major) cells: line `r`
/// starts at `r·line_step`, and neighbouring buckets along it are `stride` apart.
pub fn remap<T: Merge>(
    cells: &mut [T],
    n: usize,
    stride: usize,
    lines: usize,
    line_step: usize,
    how: Doubling,
) {
    let half = n / 2;
    for r in 0..lines {
        let base = r * line_step;
        let at = |i: usize| base + i * stride;
        let mut merged: Vec<T> = Vec::with_capacity(half);
        for j in 0..half {
            let mut a = std::mem::take(&mut cells[at(2 * j)]);
            a.merge(&cells[at(2 * j + 1)]);
            merged.push(a);
        }
        for i in 0..n {
            cells[at(i)] = T::default();
        }
        let offset = match how {
            Doubling::Right => 0,
            Doubling::Left => half,
        };
        for (j, m) in merged.into_iter().enumerate() {
            cells[at(offset + j)] = m;
        }
    }
}

/// The four extreme points of a bucket (M4: first and last by x, lowest and highest by y). Drawing them joined
/// in x order draws the same pixels as drawing every point of the bucket.
/// A NULL y in the bucket breaks the line there (`gap` is its x; the first of several).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct M4 {
    pub count: u64,
    pub first: (f64, f64),
    pub last: (f64, f64),
    pub low: (f64, f64),
    pub high: (f64, f64),
    pub gap: Option<f64>,
}

impl Default for M4 {
    fn default() -> Self {
        Self {
            count: 0,
            first: (0.0, 0.0),
            last: (0.0, 0.0),
            low: (0.0, 0.0),
            high: (0.0, 0.0),
            gap: None,
        }
    }
}

impl M4 {
    pub fn add(&mut self, x: f64, y: f64) {
        let p = (x, y);
        if self.count == 0 {
            *self = M4 {
                count: 1,
                first: p,
                last: p,
                low: p,
                high: p,
                gap: self.gap,
            };
            return;
        }
        self.count += 1;
        if x < self.first.0 {
            self.first = p;
        }
        if x >= self.last.0 {
            self.last = p;
        }
        if y < self.low.1 {
            self.low = p;
        }
        if y > self.high.1 {
            self.high = p;
        }
    }

    pub fn add_gap(&mut self, x: f64) {
        self.gap = Some(self.gap.map_or(x, |g| g.min(x)));
    }

    /// The distinct extreme points in x order, with a (NaN, NaN) where a NULL breaks the line.
    pub fn points(&self, out: &mut Vec<(f64, f64)>) {
        let mut p = Vec::with_capacity(5);
        if self.count > 0 {
            p.extend([self.first, self.low, self.high, self.last]);
        }
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        if let Some(g) = self.gap {
            let at = p.iter().position(|q| q.0 > g).unwrap_or(p.len());
            p.insert(at, (f64::NAN, f64::NAN));
        }
        for q in p {
            let same = out
                .last()
                .is_some_and(|l: &(f64, f64)| l == &q || (l.0.is_nan() && q.0.is_nan()));
            if !same {
                out.push(q);
            }
        }
    }
}

impl Merge for M4 {
    fn merge(&mut self, other: &Self) {
        if let Some(g) = other.gap {
            self.add_gap(g);
        }
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            let gap = self.gap;
            *self = *other;
            self.gap = gap;
            return;
        }
        self.count += other.count;
        if other.first.0 < self.first.0 {
            self.first = other.first;
        }
        if other.last.0 >= self.last.0 {
            self.last = other.last;
        }
        if other.low.1 < self.low.1 {
            self.low = other.low;
        }
        if other.high.1 > self.high.1 {
            self.high = other.high;
        }
    }
}

impl Merge for u64 {
    fn merge(&mut self, other: &Self) {
        *self += other;
    }
}

/// A line reduced with M4 over a doubling grid of buckets along x.
#[derive(Debug, Clone)]
pub struct M4Line {
    grid: Option<Grid>,
    buckets: Vec<M4>,
    n: usize,
    pub count: u64,
}

impl M4Line {
    pub fn new(n: usize) -> Self {
        Self {
            grid: None,
            buckets: Vec::new(),
            n: n.max(2) & !1,
            count: 0,
        }
    }

    /// Adds a point; the first point fits the grid to `[lo, hi]`, a guess of the x range (e.g. the first batch's).
    pub fn add(&mut self, x: f64, y: f64, lo: f64, hi: f64) {
        let i = self.bucket(x, lo, hi);
        self.buckets[i].add(x, y);
        self.count += 1;
    }

    /// A NULL y at `x`: the line breaks there.
    pub fn add_gap(&mut self, x: f64, lo: f64, hi: f64) {
        let i = self.bucket(x, lo, hi);
        self.buckets[i].add_gap(x);
    }

    fn bucket(&mut self, x: f64, lo: f64, hi: f64) -> usize {
        let grid = self.grid.get_or_insert_with(|| {
            self.buckets = vec![M4::default(); self.n];
            Grid::fitted(lo.min(x), hi.max(x), self.n)
        });
        loop {
            match grid.index(x) {
                Some(i) => return i,
                None => {
                    let how = grid.double_towards(x);
                    remap(&mut self.buckets, grid.n, 1, 1, 0, how);
                }
            }
        }
    }

    /// The reduced line in x order; (NaN, NaN) separates the pieces of a line broken by NULLs.
    pub fn points(&self) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        for b in &self.buckets {
            b.points(&mut out);
        }
        while out.last().is_some_and(|p| p.0.is_nan()) {
            out.pop();
        }
        if out.first().is_some_and(|p| p.0.is_nan()) {
            out.remove(0);
        }
        out
    }
}

/// Scatter points counted in a doubling `nx × ny` grid.
#[derive(Debug, Clone)]
pub struct Density {
    pub x: Grid,
    pub y: Grid,
    cells: Vec<u64>,
}

impl Density {
    pub fn new(x: Grid, y: Grid) -> Self {
        Self {
            cells: vec![0; x.n * y.n],
            x,
            y,
        }
    }

    pub fn add(&mut self, x: f64, y: f64) {
        let i = loop {
            match self.x.index(x) {
                Some(i) => break i,
                None => {
                    let how = self.x.double_towards(x);
                    remap(&mut self.cells, self.x.n, 1, self.y.n, self.x.n, how);
                }
            }
        };
        let j = loop {
            match self.y.index(y) {
                Some(j) => break j,
                None => {
                    let how = self.y.double_towards(y);
                    remap(&mut self.cells, self.y.n, self.x.n, self.x.n, 1, how);
                }
            }
        };
        self.cells[j * self.x.n + i] += 1;
    }

    /// Occupied cells: (x start, y start, count).
    pub fn cells(&self) -> Vec<(f64, f64, u64)> {
        let mut out = Vec::new();
        for j in 0..self.y.n {
            for i in 0..self.x.n {
                let c = self.cells[j * self.x.n + i];
                if c > 0 {
                    out.push((self.x.start(i), self.y.start(j), c));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_doubles_towards_values_outside_it() {
        let mut g = Grid::fitted(0.0, 10.0, 10);
        assert_eq!(g.index(0.0), Some(0));
        assert_eq!(g.index(9.99), Some(9));
        assert_eq!(g.index(-0.1), None);
        assert_eq!(g.double_towards(25.0), Doubling::Right);
        assert!(g.end() > 20.0 && g.index(5.0) == Some(2));
        assert_eq!(g.double_towards(-3.0), Doubling::Left);
        assert!(g.origin < -3.0 && g.index(-3.0).is_some());
    }

    #[test]
    fn remapping_merges_neighbours_along_either_axis() {
        // 2 rows × 4 columns, row-major.
        let mut cells: Vec<u64> = vec![1, 2, 3, 4, 10, 20, 30, 40];
        remap(&mut cells, 4, 1, 2, 4, Doubling::Right);
        assert_eq!(cells, vec![3, 7, 0, 0, 30, 70, 0, 0]);
        let mut cells: Vec<u64> = vec![1, 2, 3, 4, 10, 20, 30, 40];
        remap(&mut cells, 4, 1, 2, 4, Doubling::Left);
        assert_eq!(cells, vec![0, 0, 3, 7, 0, 0, 30, 70]);
        // Along y (2 buckets, stride 4, 4 columns).
        let mut cells: Vec<u64> = vec![1, 2, 3, 4, 10, 20, 30, 40];
        remap(&mut cells, 2, 4, 4, 1, Doubling::Right);
        assert_eq!(cells, vec![11, 22, 33, 44, 0, 0, 0, 0]);
    }

    #[test]
    fn m4_keeps_the_extremes_of_every_bucket_whatever_the_order() {
        // A sine sampled a million times, fed backwards so the grid has to grow left many times.
        let mut line = M4Line::new(200);
        let n = 1_000_000;
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for i in (0..n).rev() {
            let x = i as f64;
            let y = (x / 5000.0).sin() + if i == 123_456 { 5.0 } else { 0.0 };
            lo = lo.min(y);
            hi = hi.max(y);
            line.add(x, y, x, x + 10.0);
        }
        let p = line.points();
        assert_eq!(line.count, n as u64);
        assert!(p.len() <= 4 * 200 && p.len() > 200, "{} points", p.len());
        assert!(p.windows(2).all(|w| w[0].0 <= w[1].0), "x order");
        assert_eq!(p.first().map(|p| p.0), Some(0.0));
        assert_eq!(p.last().map(|p| p.0), Some((n - 1) as f64));
        // The spike and the global extremes survive.
        assert!(p.contains(&(123_456.0, (123_456.0f64 / 5000.0).sin() + 5.0)));
        assert_eq!(p.iter().map(|p| p.1).fold(f64::INFINITY, f64::min), lo);
        assert_eq!(p.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max), hi);
    }

    #[test]
    fn a_null_breaks_a_line_where_it_is() {
        let mut line = M4Line::new(64);
        for x in 0..10 {
            let x = x as f64;
            if x == 4.0 || x == 5.0 {
                line.add_gap(x, 0.0, 9.0);
            } else {
                line.add(x, x * 10.0, 0.0, 9.0);
            }
        }
        let p = line.points();
        let breaks: Vec<usize> = (0..p.len()).filter(|&i| p[i].0.is_nan()).collect();
        assert_eq!(breaks, vec![4], "{p:?}");
        assert_eq!(p[3], (3.0, 30.0));
        assert_eq!(p[5], (6.0, 60.0));
    }

    #[test]
    fn density_counts_every_point_once() {
        let mut d = Density::new(Grid::fitted(0.0, 1.0, 8), Grid::fitted(0.0, 1.0, 8));
        let mut n = 0;
        for i in 0..1000 {
            let x = (i as f64 * 0.37).sin() * (i as f64);
            let y = (i as f64 * 0.11).cos() * 50.0 - 300.0;
            d.add(x, y);
            n += 1;
        }
        let cells = d.cells();
        assert_eq!(cells.iter().map(|c| c.2).sum::<u64>(), n);
        assert!(cells.len() <= 64);
    }
}
