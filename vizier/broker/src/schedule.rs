//! When a CronScript runs, and over which window of time: pure functions of the spec, the clock
//! and what status says about earlier runs, so that every rule is unit-tested without a cluster.
//!
//! Ticks are absolute: a cron schedule's are its matching minutes in UTC, a frequency's are the
//! multiples of the interval since the Unix epoch. Two brokers (or one broker before and after a
//! restart) therefore agree on which tick is which, and status alone says which ticks were handled.

use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use pixie_crds::{ConcurrencyPolicy, CronScriptSpec};

/// A run's window reaches back to where the previous run's ended, but never further than this many
/// periods: after a long outage the tables no longer hold that data, and one huge query would only
/// fail (see [`window`]).
pub const MAX_WINDOW_PERIODS: i32 = 10;

/// Missed ticks are counted up to this many, for messages; a cron schedule is walked tick by tick.
const MAX_COUNTED_TICKS: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("spec.schedule: {expression:?} is not a five-field cron expression: {reason}")]
    Cron { expression: String, reason: String },
    #[error(
        "spec.frequency: {0:?} is not a duration of at least 1s written as whole ms, s, m or h, such as 10s, 5m or 1h30m"
    )]
    Frequency(String),
    #[error("spec: exactly one of schedule and frequency must be set")]
    Missing,
    #[error("spec.schedule: {0:?} never matches a time")]
    NeverMatches(String),
}

/// When a script runs.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// A five-field cron expression in UTC (or a macro such as `@hourly`).
    Cron { expression: String, cron: Box<Cron> },
    /// Every multiple of this interval since the Unix epoch.
    Every(SignedDuration),
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Schedule::Cron { expression: a, .. }, Schedule::Cron { expression: b, .. }) => a == b,
            (Schedule::Every(a), Schedule::Every(b)) => a == b,
            _ => false,
        }
    }
}

impl Schedule {
    /// The schedule a CronScript asks for; errors name the offending field.
    pub fn from_spec(spec: &CronScriptSpec) -> Result<Schedule, ScheduleError> {
        match (&spec.schedule, &spec.frequency) {
            (Some(expression), None) => Schedule::cron(expression),
            (None, Some(frequency)) => {
                let every = spec
                    .frequency_duration()
                    .ok_or_else(|| ScheduleError::Frequency(frequency.clone()))?;
                Schedule::every(every).map_err(|_| ScheduleError::Frequency(frequency.clone()))
            }
            _ => Err(ScheduleError::Missing),
        }
    }

    /// Parses a five-field cron expression (minute hour day-of-month month day-of-week, Sunday 0
    /// or 7), or one of the macros the CRD accepts.
    pub fn cron(expression: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = expression.trim();
        // Kubernetes CronJobs accept @midnight; croner knows it as @daily.
        let pattern = if trimmed.eq_ignore_ascii_case("@midnight") {
            "@daily"
        } else {
            trimmed
        };
        let error = |reason: String| ScheduleError::Cron {
            expression: expression.to_owned(),
            reason,
        };
        if !pattern.starts_with('@') && pattern.split_whitespace().count() != 5 {
            return Err(error("expected five space-separated fields".into()));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(pattern)
            .map_err(|e| error(e.to_string()))?;
        let schedule = Schedule::Cron {
            expression: expression.to_owned(),
            cron: Box::new(cron),
        };
        // "0 0 30 2 *" parses but never runs; say so instead of never scheduling anything.
        if schedule.next_after(Timestamp::UNIX_EPOCH).is_none() {
            return Err(ScheduleError::NeverMatches(expression.to_owned()));
        }
        Ok(schedule)
    }

    /// A fixed interval of at least one second.
    pub fn every(interval: Duration) -> Result<Schedule, ScheduleError> {
        if interval < Duration::from_secs(1) {
            return Err(ScheduleError::Frequency(format!("{interval:?}")));
        }
        let interval = SignedDuration::try_from(interval)
            .map_err(|_| ScheduleError::Frequency(format!("{interval:?}")))?;
        Ok(Schedule::Every(interval))
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Every(interval) => {
                let period = interval.as_nanos();
                let floor = t.as_nanosecond().div_euclid(period) * period;
                Timestamp::from_nanosecond(floor + period).ok()
            }
            Schedule::Cron { cron, .. } => {
                let zoned = t.to_zoned(TimeZone::UTC);
                cron.find_next_occurrence(&zoned, false)
                    .ok()
                    .map(|z| z.timestamp())
            }
        }
    }

    /// The latest tick at or before `t`.
    pub fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Every(interval) => {
                let period = interval.as_nanos();
                Timestamp::from_nanosecond(t.as_nanosecond().div_euclid(period) * period).ok()
            }
            Schedule::Cron { cron, .. } => {
                // Ticks fall on whole seconds; croner compares at second precision.
                let whole = Timestamp::from_second(t.as_second()).ok()?;
                let zoned = whole.to_zoned(TimeZone::UTC);
                cron.find_previous_occurrence(&zoned, true)
                    .ok()
                    .map(|z| z.timestamp())
            }
        }
    }

    /// The latest tick strictly before `t`.
    pub fn previous_before(&self, t: Timestamp) -> Option<Timestamp> {
        let just_before = t.checked_sub(SignedDuration::from_nanos(1)).ok()?;
        self.latest_at_or_before(just_before)
    }

    /// The length of the period that ends at `tick`: the time since the tick before it.
    pub fn period_ending(&self, tick: Timestamp) -> SignedDuration {
        match self {
            Schedule::Every(interval) => *interval,
            Schedule::Cron { .. } => match self.previous_before(tick) {
                Some(previous) => tick.duration_since(previous),
                // The very first tick of a schedule: one minute, cron's finest grain.
                None => SignedDuration::from_secs(60),
            },
        }
    }
}

/// The stretch of time one run covers: rows with `start <= time_ < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Window {
    pub fn start_ns(&self) -> i64 {
        nanos(self.start)
    }
    pub fn end_ns(&self) -> i64 {
        nanos(self.end)
    }
}

/// Nanoseconds since the Unix epoch, saturating (timestamps jiff accepts fit until year 2262).
pub fn nanos(t: Timestamp) -> i64 {
    i64::try_from(t.as_nanosecond()).unwrap_or(if t.as_nanosecond() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

/// The window of the run for `tick`, as Pixie's cron runner does it: from where the previous run's
/// window ended to the tick, so that consecutive runs cover time without gaps or overlaps. The
/// first run (or one whose predecessor is unknown, or ended after this tick) covers one period; a
/// window is never longer than [`MAX_WINDOW_PERIODS`] periods.
pub fn window(schedule: &Schedule, tick: Timestamp, previous_end: Option<Timestamp>) -> Window {
    let period = schedule.period_ending(tick);
    let one_period = tick.checked_sub(period).unwrap_or(Timestamp::MIN);
    let longest = tick
        .checked_sub(period * MAX_WINDOW_PERIODS)
        .unwrap_or(Timestamp::MIN);
    let start = match previous_end {
        Some(previous) if previous < tick => previous.max(longest),
        _ => one_period,
    };
    Window { start, end: tick }
}

/// What to do about the ticks that passed while no broker ran a script (it was down, lost its
/// lease, the script was suspended or was just created), decided like a Kubernetes CronJob: run
/// once for the most recent missed tick if its starting deadline allows, never replay the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatchUp {
    /// No tick was missed.
    Nothing,
    /// Run now for `tick`; `older` earlier ticks were missed too and are not replayed.
    Run { tick: Timestamp, older: u64 },
    /// The most recent missed tick is past the starting deadline: record it as skipped.
    Skip {
        tick: Timestamp,
        missed: u64,
        late_by: SignedDuration,
    },
}

/// `handled_until`: ticks at or before it were handled (the last run's start, or the object's
/// creation when it never ran).
pub fn catch_up(
    schedule: &Schedule,
    handled_until: Timestamp,
    now: Timestamp,
    deadline: Option<SignedDuration>,
) -> CatchUp {
    let Some(latest) = schedule.latest_at_or_before(now) else {
        return CatchUp::Nothing;
    };
    if latest <= handled_until {
        return CatchUp::Nothing;
    }
    let missed = count_ticks(schedule, handled_until, latest);
    let late_by = now.duration_since(latest);
    if is_past_deadline(latest, now, deadline) {
        CatchUp::Skip {
            tick: latest,
            missed,
            late_by,
        }
    } else {
        CatchUp::Run {
            tick: latest,
            older: missed.saturating_sub(1),
        }
    }
}

/// Ticks in `(after, until]`, counted up to a bound.
fn count_ticks(schedule: &Schedule, after: Timestamp, until: Timestamp) -> u64 {
    match schedule {
        Schedule::Every(interval) => {
            let period = interval.as_nanos();
            let count =
                until.as_nanosecond().div_euclid(period) - after.as_nanosecond().div_euclid(period);
            u64::try_from(count.max(0))
                .unwrap_or(u64::MAX)
                .min(MAX_COUNTED_TICKS)
        }
        Schedule::Cron { .. } => {
            let mut count = 0;
            let mut t = after;
            while count < MAX_COUNTED_TICKS {
                match schedule.next_after(t) {
                    Some(tick) if tick <= until => {
                        count += 1;
                        t = tick;
                    }
                    _ => break,
                }
            }
            count
        }
    }
}

/// A run may start no later than `deadline` after its tick (startingDeadlineSeconds).
pub fn is_past_deadline(tick: Timestamp, now: Timestamp, deadline: Option<SignedDuration>) -> bool {
    deadline.is_some_and(|deadline| now.duration_since(tick) > deadline)
}

/// The starting deadline of a spec, when it has one.
pub fn starting_deadline(spec: &CronScriptSpec) -> Option<SignedDuration> {
    spec.starting_deadline_seconds
        .filter(|s| *s > 0)
        .map(SignedDuration::from_secs)
}

/// What to do at a tick, given the runs of the same script still going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickAction {
    /// Start a run (alongside any still going, under Allow).
    Start,
    /// Cancel the runs still going, then start a new one (Replace).
    Replace,
    /// Do not start; record a skipped run with this reason (Forbid).
    Skip(String),
}

/// `oldest_running`: the start of the oldest run of this script still going, if any.
pub fn on_tick(policy: ConcurrencyPolicy, oldest_running: Option<Timestamp>) -> TickAction {
    match (policy, oldest_running) {
        (_, None) | (ConcurrencyPolicy::Allow, Some(_)) => TickAction::Start,
        (ConcurrencyPolicy::Replace, Some(_)) => TickAction::Replace,
        (ConcurrencyPolicy::Forbid, Some(started)) => TickAction::Skip(format!(
            "the run started at {} is still going and concurrencyPolicy is Forbid",
            started
                .round(k8s_openapi::jiff::Unit::Second)
                .unwrap_or(started)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pixie_crds::LocalObjectRef;
    use proptest::prelude::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn spec(schedule: Option<&str>, frequency: Option<&str>) -> CronScriptSpec {
        CronScriptSpec {
            source: Some("import px".into()),
            script_ref: None,
            args: Default::default(),
            schedule: schedule.map(str::to_owned),
            frequency: frequency.map(str::to_owned),
            vizier_ref: LocalObjectRef::new("pixie"),
            export_refs: vec![],
            suspend: None,
            concurrency_policy: ConcurrencyPolicy::Forbid,
            starting_deadline_seconds: None,
        }
    }

    #[test]
    fn a_frequency_ticks_on_multiples_of_the_interval_since_the_epoch() {
        let every = Schedule::from_spec(&spec(None, Some("10s"))).unwrap();
        assert_eq!(
            every.next_after(ts("2026-01-01T00:00:03Z")),
            Some(ts("2026-01-01T00:00:10Z"))
        );
        assert_eq!(
            every.next_after(ts("2026-01-01T00:00:10Z")),
            Some(ts("2026-01-01T00:00:20Z"))
        );
        assert_eq!(
            every.latest_at_or_before(ts("2026-01-01T00:00:10Z")),
            Some(ts("2026-01-01T00:00:10Z"))
        );
        assert_eq!(
            every.previous_before(ts("2026-01-01T00:00:10Z")),
            Some(ts("2026-01-01T00:00:00Z"))
        );
        let ninety = Schedule::from_spec(&spec(None, Some("1m30s"))).unwrap();
        assert_eq!(ninety, Schedule::Every(SignedDuration::from_secs(90)));
    }

    #[test]
    fn a_cron_schedule_is_five_fields_in_utc_with_sunday_as_zero() {
        let hourly = Schedule::cron("@hourly").unwrap();
        assert_eq!(
            hourly.next_after(ts("2026-01-01T10:20:00Z")),
            Some(ts("2026-01-01T11:00:00Z"))
        );
        let five = Schedule::cron("*/5 * * * *").unwrap();
        assert_eq!(
            five.next_after(ts("2026-01-01T10:20:00Z")),
            Some(ts("2026-01-01T10:25:00Z"))
        );
        assert_eq!(
            five.next_after(ts("2026-01-01T10:20:00.5Z")),
            Some(ts("2026-01-01T10:25:00Z"))
        );
        assert_eq!(
            five.latest_at_or_before(ts("2026-01-01T10:24:59.9Z")),
            Some(ts("2026-01-01T10:20:00Z"))
        );
        assert_eq!(
            five.latest_at_or_before(ts("2026-01-01T10:20:00Z")),
            Some(ts("2026-01-01T10:20:00Z"))
        );
        // 2026-01-01 is a Thursday; the next Sunday noon is the 4th.
        let sunday = Schedule::cron("0 12 * * 0").unwrap();
        assert_eq!(
            sunday.next_after(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-01-04T12:00:00Z"))
        );
        let midnight = Schedule::cron("@midnight").unwrap();
        assert_eq!(
            midnight.next_after(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-01-02T00:00:00Z"))
        );
        assert_eq!(
            five.period_ending(ts("2026-01-01T10:25:00Z")),
            SignedDuration::from_mins(5)
        );
    }

    #[test]
    fn bad_schedules_name_the_field() {
        let six = Schedule::cron("0 */5 * * * *").unwrap_err();
        assert!(six.to_string().starts_with("spec.schedule: "), "{six}");
        let bad = Schedule::cron("61 * * * *").unwrap_err();
        assert!(bad.to_string().starts_with("spec.schedule: "), "{bad}");
        let never = Schedule::cron("0 0 30 2 *").unwrap_err();
        assert_eq!(never, ScheduleError::NeverMatches("0 0 30 2 *".into()));
        let frequency = Schedule::from_spec(&spec(None, Some("fast"))).unwrap_err();
        assert!(
            frequency
                .to_string()
                .starts_with("spec.frequency: \"fast\""),
            "{frequency}"
        );
        assert_eq!(
            Schedule::from_spec(&spec(None, None)).unwrap_err(),
            ScheduleError::Missing
        );
        assert!(Schedule::every(Duration::from_millis(500)).is_err());
    }

    #[test]
    fn consecutive_windows_meet_and_the_first_covers_one_period() {
        let every = Schedule::every(Duration::from_secs(10)).unwrap();
        let first = window(&every, ts("2026-01-01T00:00:10Z"), None);
        assert_eq!(
            first,
            Window {
                start: ts("2026-01-01T00:00:00Z"),
                end: ts("2026-01-01T00:00:10Z")
            }
        );
        let second = window(&every, ts("2026-01-01T00:00:20Z"), Some(first.end));
        assert_eq!(second.start, first.end);
        // A skipped tick in between: the next run covers both periods.
        let after_skip = window(
            &every,
            ts("2026-01-01T00:00:40Z"),
            Some(ts("2026-01-01T00:00:20Z")),
        );
        assert_eq!(after_skip.start, ts("2026-01-01T00:00:20Z"));
        // After a long outage the window stops at ten periods.
        let late = window(
            &every,
            ts("2026-01-01T01:00:00Z"),
            Some(ts("2026-01-01T00:00:00Z")),
        );
        assert_eq!(late.start, ts("2026-01-01T00:58:20Z"));
        // A previous end at or after the tick (a clock step) is ignored.
        let odd = window(
            &every,
            ts("2026-01-01T00:00:10Z"),
            Some(ts("2026-01-01T00:00:11Z")),
        );
        assert_eq!(odd.start, ts("2026-01-01T00:00:00Z"));
    }

    #[test]
    fn after_downtime_only_the_latest_missed_tick_runs() {
        let every = Schedule::every(Duration::from_secs(10)).unwrap();
        let last_run = ts("2026-01-01T00:00:00.004Z");
        assert_eq!(
            catch_up(&every, last_run, ts("2026-01-01T00:00:09Z"), None),
            CatchUp::Nothing
        );
        assert_eq!(
            catch_up(&every, last_run, ts("2026-01-01T00:00:45Z"), None),
            CatchUp::Run {
                tick: ts("2026-01-01T00:00:40Z"),
                older: 3
            }
        );
        assert_eq!(
            catch_up(
                &every,
                last_run,
                ts("2026-01-01T00:00:45Z"),
                Some(SignedDuration::from_secs(10))
            ),
            CatchUp::Run {
                tick: ts("2026-01-01T00:00:40Z"),
                older: 3
            }
        );
        assert_eq!(
            catch_up(
                &every,
                last_run,
                ts("2026-01-01T00:00:45Z"),
                Some(SignedDuration::from_secs(2))
            ),
            CatchUp::Skip {
                tick: ts("2026-01-01T00:00:40Z"),
                missed: 4,
                late_by: SignedDuration::from_secs(5)
            }
        );
        let hourly = Schedule::cron("@hourly").unwrap();
        assert_eq!(
            catch_up(
                &hourly,
                ts("2026-01-01T00:00:00Z"),
                ts("2026-01-01T05:30:00Z"),
                None
            ),
            CatchUp::Run {
                tick: ts("2026-01-01T05:00:00Z"),
                older: 4
            }
        );
    }

    #[test]
    fn a_new_script_waits_for_its_first_tick() {
        let every = Schedule::every(Duration::from_secs(10)).unwrap();
        let created = ts("2026-01-01T00:00:05Z");
        assert_eq!(
            catch_up(&every, created, ts("2026-01-01T00:00:06Z"), None),
            CatchUp::Nothing
        );
        assert_eq!(
            every.next_after(ts("2026-01-01T00:00:06Z")),
            Some(ts("2026-01-01T00:00:10Z"))
        );
    }

    #[test]
    fn the_concurrency_policy_decides_what_a_busy_tick_does() {
        let started = ts("2026-01-01T00:00:00Z");
        assert_eq!(on_tick(ConcurrencyPolicy::Forbid, None), TickAction::Start);
        assert_eq!(
            on_tick(ConcurrencyPolicy::Allow, Some(started)),
            TickAction::Start
        );
        assert_eq!(
            on_tick(ConcurrencyPolicy::Replace, Some(started)),
            TickAction::Replace
        );
        let TickAction::Skip(reason) = on_tick(ConcurrencyPolicy::Forbid, Some(started)) else {
            panic!("Forbid must skip");
        };
        assert!(
            reason.contains("2026-01-01T00:00:00Z") && reason.contains("Forbid"),
            "{reason}"
        );
    }

    #[test]
    fn the_deadline_is_measured_from_the_tick() {
        let tick = ts("2026-01-01T00:00:00Z");
        let deadline = Some(SignedDuration::from_secs(5));
        assert!(!is_past_deadline(
            tick,
            ts("2026-01-01T00:00:05Z"),
            deadline
        ));
        assert!(is_past_deadline(
            tick,
            ts("2026-01-01T00:00:05.001Z"),
            deadline
        ));
        assert!(!is_past_deadline(tick, ts("2030-01-01T00:00:00Z"), None));
    }

    fn any_time() -> impl Strategy<Value = Timestamp> {
        // 2001 to 2096, at millisecond precision.
        (1_000_000_000_000i64..4_000_000_000_000)
            .prop_map(|ms| Timestamp::from_millisecond(ms).unwrap())
    }

    fn any_schedule() -> impl Strategy<Value = Schedule> {
        prop_oneof![
            (1u64..100_000).prop_map(|s| Schedule::every(Duration::from_secs(s)).unwrap()),
            prop::sample::select(vec![
                "*/5 * * * *",
                "0 * * * *",
                "15 3 * * 1-5",
                "0 0 1 * *",
                "30 */2 * * 0",
                "@daily"
            ])
            .prop_map(|e| Schedule::cron(e).unwrap()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn no_tick_falls_between_the_latest_and_the_next(schedule in any_schedule(), t in any_time()) {
            let latest = schedule.latest_at_or_before(t).unwrap();
            let next = schedule.next_after(t).unwrap();
            prop_assert!(latest <= t && t < next);
            prop_assert_eq!(schedule.next_after(latest), Some(next));
            prop_assert_eq!(schedule.latest_at_or_before(next), Some(next));
        }

        #[test]
        fn windows_chained_over_ticks_cover_time_exactly_once(schedule in any_schedule(), t in any_time(), runs in 1usize..6) {
            let mut tick = schedule.next_after(t).unwrap();
            let mut previous = None;
            let mut covered_until: Option<Timestamp> = None;
            for _ in 0..runs {
                let w = window(&schedule, tick, previous);
                prop_assert!(w.start < w.end);
                if let Some(until) = covered_until {
                    prop_assert_eq!(w.start, until);
                }
                covered_until = Some(w.end);
                previous = Some(w.end);
                tick = schedule.next_after(tick).unwrap();
            }
        }

        #[test]
        fn catch_up_never_runs_more_than_once_or_a_future_tick(
            schedule in any_schedule(), handled in any_time(), gap_s in 0i64..1_000_000, deadline_s in prop::option::of(1i64..100_000),
        ) {
            let now = handled.checked_add(SignedDuration::from_secs(gap_s)).unwrap();
            let deadline = deadline_s.map(SignedDuration::from_secs);
            match catch_up(&schedule, handled, now, deadline) {
                CatchUp::Nothing => prop_assert!(schedule.next_after(handled).unwrap() > now),
                CatchUp::Run { tick, .. } => {
                    prop_assert!(handled < tick && tick <= now);
                    prop_assert!(!is_past_deadline(tick, now, deadline));
                    prop_assert!(schedule.next_after(tick).unwrap() > now, "only the latest missed tick runs");
                }
                CatchUp::Skip { tick, missed, .. } => {
                    prop_assert!(handled < tick && tick <= now && missed >= 1);
                    prop_assert!(is_past_deadline(tick, now, deadline));
                }
            }
        }
    }
}
