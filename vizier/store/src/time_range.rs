/// A half-open interval `[start_ns, end_ns)` of `time_` values, nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeRange {
    pub start_ns: i64,
    pub end_ns: i64,
}

impl TimeRange {
    pub fn new(start_ns: i64, end_ns: i64) -> Self {
        TimeRange { start_ns, end_ns }
    }

    /// Every timestamp but `i64::MAX` (year 2262), which a half-open range cannot include.
    pub fn all() -> Self {
        TimeRange::new(i64::MIN, i64::MAX)
    }

    /// From `start_ns` on.
    pub fn since(start_ns: i64) -> Self {
        TimeRange::new(start_ns, i64::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.start_ns >= self.end_ns
    }

    pub fn contains(&self, t: i64) -> bool {
        self.start_ns <= t && t < self.end_ns
    }

    /// Whether any of the closed interval `[min, max]` falls in the range.
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        min < self.end_ns && max >= self.start_ns && !self.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_is_exclusive_and_start_inclusive() {
        let r = TimeRange::new(10, 20);
        assert!(r.contains(10));
        assert!(r.contains(19));
        assert!(!r.contains(20));
        assert!(!r.contains(9));
    }

    #[test]
    fn overlap_treats_batch_bounds_as_closed() {
        let r = TimeRange::new(10, 20);
        assert!(r.overlaps(0, 10));
        assert!(r.overlaps(19, 30));
        assert!(!r.overlaps(20, 30));
        assert!(!r.overlaps(0, 9));
        assert!(r.overlaps(0, 100));
    }

    #[test]
    fn an_empty_range_overlaps_nothing() {
        assert!(!TimeRange::new(5, 5).overlaps(i64::MIN, i64::MAX - 1));
        assert!(!TimeRange::new(6, 5).overlaps(0, 10));
    }
}
