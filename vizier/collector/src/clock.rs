//! Kernel events carry CLOCK_MONOTONIC nanoseconds (`bpf_ktime_get_ns`); tables want nanoseconds
//! since the Unix epoch. The offset between the two is measured, and re-measured every tick so
//! that wall-clock adjustments show up in new rows.

/// `realtime = monotonic + offset_ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockConverter {
    pub offset_ns: i64,
}

impl ClockConverter {
    /// Measures the offset now.
    pub fn measure() -> Self {
        let mono = monotonic_now_ns() as i64;
        let real = read_clock(libc::CLOCK_REALTIME) as i64;
        ClockConverter {
            offset_ns: real - mono,
        }
    }

    pub fn to_realtime_ns(&self, monotonic_ns: u64) -> i64 {
        (monotonic_ns as i64).saturating_add(self.offset_ns)
    }
}

/// The clock the kernel side stamps events with.
pub fn monotonic_now_ns() -> u64 {
    read_clock(libc::CLOCK_MONOTONIC)
}

fn read_clock(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into; both clocks always exist on Linux.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({clock}) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converted_monotonic_now_is_close_to_the_system_time() {
        let clock = ClockConverter::measure();
        let converted = clock.to_realtime_ns(monotonic_now_ns());
        let system = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        assert!(
            (converted - system).abs() < 50_000_000,
            "{converted} vs {system}"
        );
    }

    #[test]
    fn conversion_adds_the_offset() {
        assert_eq!(ClockConverter { offset_ns: 10 }.to_realtime_ns(5), 15);
    }
}
