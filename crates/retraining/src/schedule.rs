//! Schedule triggers: a cron expression read in an IANA time zone ([`Schedule`]), and the
//! task that fires them ([`run`]).
//!
//! The expression has the five standard fields, `minute hour day-of-month month
//! day-of-week`, each `*`, a value, a range `a-b`, a step `*/n`, `a-b/n` or `a/n` (from `a`
//! to the field's end), or a list of these `a,b-c`; months and days may be named (`jan`..
//! `dec`, `sun`..`sat`, any case) and Sunday is 0 or 7. The macros `@hourly`, `@daily`
//! (`@midnight`), `@weekly`, `@monthly` and `@yearly` (`@annually`) stand for their usual
//! expressions. When both day fields are restricted (neither is `*`), a day matching either
//! fires (Vixie cron's rule; as in Kubernetes, `*/2` counts as restricted).
//!
//! The fields match the wall clock of the time zone. Where it jumps forward (a spring DST
//! change) a time that does not exist fires later by the jump's length, at 03:30 for 02:30
//! when 02:00 becomes 03:00 (as `java.time` and Python's `zoneinfo` read such a time): a
//! daily schedule still fires that day, and one whose next time is that same instant fires
//! once. Where it goes back (autumn) a time that occurs twice fires once, at its first
//! occurrence, unless the hour field is `*`: a schedule run every hour keeps its pace and
//! fires in both passes of the repeated hour.

use std::sync::Arc;
use std::time::Duration;

use chrono::{
    DateTime, Datelike, Days, NaiveDate, NaiveDateTime, Offset, SecondsFormat, TimeDelta, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;
use mlops_runtime::shutdown::CancellationToken;

use crate::error::Result;
use crate::policy::Trigger;
use crate::store::{Refused, Retrain, Store};

/// A person's mistake in a schedule or a time zone, worded for them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

/// The time zone named `name` (IANA, like `Europe/Paris`; empty: UTC).
pub fn time_zone(name: &str) -> Result<Tz, ScheduleError> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    name.parse().map_err(|_| {
        ScheduleError(format!(
            "`{name}` is not an IANA time zone name (like `Europe/Paris`, `America/New_York` \
             or `UTC`, in that case; empty is UTC)"
        ))
    })
}

/// A parsed cron expression in its time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    expression: String,
    tz: Tz,
    /// One bit per allowed value of each field (day-of-week: 0 to 6, Sunday 0).
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Both day fields are restricted: a day matching either fires.
    either_day: bool,
    /// The hour field is `*`: both passes of a repeated hour fire.
    every_hour: bool,
}

/// How far ahead a fire time is looked for (Feb 29 comes back after 8 years at most).
const HORIZON: Days = Days::new(366 * 10);
/// More than any UTC offset, so that a wall-clock time that far past an instant (in UTC)
/// is later than it in any zone.
const MAX_OFFSET: TimeDelta = TimeDelta::hours(16);

struct Field {
    name: &'static str,
    min: u32,
    /// The largest value written.
    max: u32,
    /// Where `*` and `a/n` end (day-of-week: 6, though 7 may be written for Sunday).
    last: u32,
    names: &'static [&'static str],
    /// The value of the first name.
    first_name: u32,
    what: &'static str,
}

const MINUTE: Field = Field::numbers("minute", 0, 59);
const HOUR: Field = Field::numbers("hour", 0, 23);
const DAY: Field = Field::numbers("day-of-month", 1, 31);
const MONTH: Field = Field {
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    first_name: 1,
    what: "a number (1-12) or a month name (jan..dec)",
    ..Field::numbers("month", 1, 12)
};
const WEEKDAY: Field = Field {
    max: 7,
    last: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    first_name: 0,
    what: "a number (0-7, Sunday 0 or 7) or a day name (sun..sat)",
    ..Field::numbers("day-of-week", 0, 6)
};

/// The longest each month can be (a leap year's February).
const MONTH_DAYS: [u32; 13] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

impl Field {
    const fn numbers(name: &'static str, min: u32, max: u32) -> Field {
        Field {
            name,
            min,
            max,
            last: max,
            names: &[],
            first_name: 0,
            what: "a number",
        }
    }

    fn error(&self, message: String) -> ScheduleError {
        ScheduleError(format!("{}: {message}", self.name))
    }

    fn value(&self, token: &str) -> Result<u32, ScheduleError> {
        if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
            return match token.parse::<u32>() {
                Ok(v) if (self.min..=self.max).contains(&v) => Ok(v),
                _ => Err(self.error(format!(
                    "{token} is out of range ({}-{})",
                    self.min, self.max
                ))),
            };
        }
        match self
            .names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(token))
        {
            Some(i) => Ok(i as u32 + self.first_name),
            None => Err(self.error(format!("`{token}` is not {}", self.what))),
        }
    }

    /// The field's values as bits.
    fn parse(&self, text: &str) -> Result<u64, ScheduleError> {
        let mut bits = 0u64;
        for item in text.split(',') {
            if item.is_empty() {
                return Err(self.error(format!("an empty item in `{text}` (a list is `a,b,c`)")));
            }
            let (range, step) = match item.split_once('/') {
                Some((range, s)) => match s.parse::<u32>() {
                    Ok(n) if n >= 1 && s.bytes().all(|b| b.is_ascii_digit()) => (range, Some(n)),
                    _ => {
                        return Err(self.error(format!(
                            "the step `{s}` in `{item}` must be a whole number of at least 1"
                        )))
                    }
                },
                None => (item, None),
            };
            let (lo, hi) = if range == "*" {
                (self.min, self.last)
            } else if let Some((a, b)) = range.split_once('-') {
                let (lo, mut hi) = (self.value(a)?, self.value(b)?);
                if self.max > self.last && hi == 0 && lo > 0 {
                    hi = self.max; // `fri-sun`: Sunday as 7
                }
                if lo > hi {
                    return Err(self.error(format!(
                        "the range `{range}` runs backwards ({a} comes after {b})"
                    )));
                }
                (lo, hi)
            } else {
                let v = self.value(range)?;
                (v, if step.is_some() { self.last } else { v })
            };
            for v in (lo..=hi).step_by(step.unwrap_or(1) as usize) {
                bits |= 1 << v;
            }
        }
        if self.max > self.last && bits & (1 << self.max) != 0 {
            bits = (bits & !(1 << self.max)) | 1; // Sunday as 7 is Sunday as 0
        }
        Ok(bits)
    }
}

/// Whether a field leaves its days unrestricted for the day-of-month/day-of-week rule.
fn unrestricted(text: &str) -> bool {
    text == "*" || text == "*/1"
}

fn has(bits: u64, v: u32) -> bool {
    bits & (1 << v) != 0
}

impl Schedule {
    /// Reads `expression` (five fields or a macro) to be matched in `tz`.
    pub fn parse(expression: &str, tz: Tz) -> Result<Schedule, ScheduleError> {
        let expression = expression.trim();
        let expanded = match expression.strip_prefix('@') {
            None => expression,
            Some(m) => match m.to_ascii_lowercase().as_str() {
                "hourly" => "0 * * * *",
                "daily" | "midnight" => "0 0 * * *",
                "weekly" => "0 0 * * 0",
                "monthly" => "0 0 1 * *",
                "yearly" | "annually" => "0 0 1 1 *",
                _ => {
                    return Err(ScheduleError(format!(
                        "`{expression}` is not a macro this service knows: @hourly, @daily, \
                         @midnight, @weekly, @monthly, @yearly or @annually (or write the five \
                         fields)"
                    )))
                }
            },
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(ScheduleError(format!(
                "a schedule has 5 fields, minute hour day-of-month month day-of-week (like \
                 `0 3 * * mon`), got {} in `{expression}`{}",
                fields.len(),
                if fields.len() == 6 {
                    " (a seconds field is not supported)"
                } else {
                    ""
                }
            )));
        };
        let s = Schedule {
            expression: expression.to_owned(),
            tz,
            minutes: MINUTE.parse(minute)?,
            hours: HOUR.parse(hour)?,
            days: DAY.parse(day)?,
            months: MONTH.parse(month)?,
            weekdays: WEEKDAY.parse(weekday)?,
            either_day: !unrestricted(day) && !unrestricted(weekday),
            every_hour: unrestricted(hour),
        };
        if unrestricted(weekday)
            && !(1..=12u32)
                .any(|m| has(s.months, m) && (1..=MONTH_DAYS[m as usize]).any(|d| has(s.days, d)))
        {
            return Err(DAY.error(format!(
                "no day `{day}` falls in month `{month}`: the schedule would never fire"
            )));
        }
        Ok(s)
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone its fields are read in.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The first fire time strictly after `after`; None when there is none in ten years.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Wall-clock order is not time order across a clock change, so every wall-clock
        // time that may map after `after` is looked at, until one is past the best so far
        // whatever the offset.
        let start = after.naive_utc() - MAX_OFFSET;
        let until = after.naive_utc().date().checked_add_days(HORIZON)?;
        let mut from = start.with_second(0)?.with_nanosecond(0)?;
        let mut best: Option<DateTime<Utc>> = None;
        while let Some(local) = self.next_local(from, until) {
            if best.is_some_and(|b| local > b.naive_utc() + MAX_OFFSET) {
                break;
            }
            for t in self.instants(local).into_iter().flatten() {
                if t > after && best.is_none_or(|b| t < b) {
                    best = Some(t);
                }
            }
            from = local + TimeDelta::minutes(1);
        }
        best
    }

    /// The first wall-clock time at or after `from` the fields match, up to `until`.
    fn next_local(&self, from: NaiveDateTime, until: NaiveDate) -> Option<NaiveDateTime> {
        let mut date = from.date();
        let (mut hour, mut minute) = (from.hour(), from.minute());
        while date <= until {
            if !has(self.months, date.month()) {
                let (y, m) = (date.year(), date.month());
                date = if m == 12 {
                    NaiveDate::from_ymd_opt(y + 1, 1, 1)?
                } else {
                    NaiveDate::from_ymd_opt(y, m + 1, 1)?
                };
                (hour, minute) = (0, 0);
                continue;
            }
            if self.day_matches(date) {
                if let Some((h, m)) = self.time_from(hour, minute) {
                    return date.and_hms_opt(h, m, 0);
                }
            }
            date = date.succ_opt()?;
            (hour, minute) = (0, 0);
        }
        None
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let day = has(self.days, date.day());
        let weekday = has(self.weekdays, date.weekday().num_days_from_sunday());
        if self.either_day {
            day || weekday
        } else {
            day && weekday
        }
    }

    /// The first matching time of day at or after `hour:minute`.
    fn time_from(&self, hour: u32, minute: u32) -> Option<(u32, u32)> {
        (hour..24).filter(|h| has(self.hours, *h)).find_map(|h| {
            let from = if h == hour { minute } else { 0 };
            let rest = self.minutes >> from;
            (rest != 0).then(|| (h, from + rest.trailing_zeros()))
        })
    }

    /// The instants a matching wall-clock time fires at (see the module's rules).
    fn instants(&self, local: NaiveDateTime) -> [Option<DateTime<Utc>>; 2] {
        match self.tz.from_local_datetime(&local) {
            chrono::LocalResult::Single(t) => [Some(t.to_utc()), None],
            chrono::LocalResult::Ambiguous(first, second) => [
                Some(first.to_utc()),
                self.every_hour.then(|| second.to_utc()),
            ],
            chrono::LocalResult::None => [self.after_gap(local), None],
        }
    }

    /// A time the clock jumped over, read with the offset in force before the jump.
    fn after_gap(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        (1..=48 * 60).find_map(|back| {
            let before = self
                .tz
                .from_local_datetime(&(local - TimeDelta::minutes(back)))
                .earliest()?;
            let offset = i64::from(before.offset().fix().local_minus_utc());
            Some((local - TimeDelta::seconds(offset)).and_utc())
        })
    }

    /// A fire time as the retrain's trigger names it: in the zone, with its offset.
    pub fn show(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.tz)
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

/// What a scheduled fire did.
#[derive(Debug)]
pub enum Fire {
    /// A retrain started.
    Started(Box<Retrain>),
    /// The policy's cooldown or limit of concurrent retrains refused it; the fire is done
    /// all the same.
    Refused(Refused),
    /// Nothing: another replica handled the fire first, or the policy's schedule changed
    /// or the policy went meanwhile.
    Handled,
}

/// How often the schedules are looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Starts the retrains whose schedule is due at `now`, one per policy: a fire time passed
/// since the policy's last handled one. Fire times missed while no replica checked (the
/// service was down) start one catch-up retrain together, as a Kubernetes CronJob without
/// `startingDeadlineSeconds` does; a fire the cooldown or `max_concurrent` refuses is done
/// all the same (logged, not retried).
pub async fn check(store: &Store, now: DateTime<Utc>) -> Result<Vec<(String, Fire)>> {
    let mut fired = vec![];
    for (policy, handled) in store.schedules().await? {
        let model = policy.model.clone();
        let t = policy.triggers.unwrap_or_default();
        let schedule = match time_zone(&t.time_zone).and_then(|tz| Schedule::parse(&t.schedule, tz))
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%model, error = %e, "a stored schedule does not parse");
                continue;
            }
        };
        let since = DateTime::from_timestamp_millis(handled).unwrap_or_default();
        let Some(due) = schedule.next_after(since).filter(|d| *d <= now) else {
            continue;
        };
        let missed = schedule.next_after(due).is_some_and(|n| n <= now);
        let trigger = Trigger {
            kind: "schedule",
            detail: format!(
                "schedule `{}` ({}): fire time {}{}",
                schedule.expression(),
                schedule.tz().name(),
                schedule.show(due),
                if missed {
                    ", and later ones missed up to now (one catch-up retrain)"
                } else {
                    ""
                }
            ),
        };
        let fire = store
            .fire_schedule(&model, handled, now.timestamp_millis(), &trigger)
            .await?;
        match &fire {
            Fire::Started(r) => {
                tracing::info!(retrain = %r.id, %model, detail = %trigger.detail, "retrain triggered")
            }
            Fire::Refused(refused) => {
                tracing::info!(%model, detail = %trigger.detail, %refused, "scheduled fire not acted on")
            }
            Fire::Handled => continue,
        }
        fired.push((model, fire));
    }
    Ok(fired)
}

/// Checks the schedules every [`CHECK_EVERY`] until `stop`; `wake` tells the pipeline a
/// retrain started.
pub async fn run(
    store: Store,
    wake: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        match check(&store, Utc::now()).await {
            Ok(fired) => {
                if fired.iter().any(|(_, f)| matches!(f, Fire::Started(_))) {
                    wake.notify_one();
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot check the schedules"),
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn next(expression: &str, tz: &str, after: &str) -> String {
        let s = Schedule::parse(expression, time_zone(tz).unwrap()).unwrap();
        let t = s.next_after(at(after)).unwrap();
        t.to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    #[test]
    fn fire_times() {
        let (paris, new_york) = ("Europe/Paris", "America/New_York");
        #[rustfmt::skip]
        let cases = [
            // (expression, time zone, after, the next fire time)
            ("*/15 * * * *", "", "2024-01-01T00:07:30Z", "2024-01-01T00:15:00Z"),
            ("0 * * * *", "", "2024-01-01T01:00:00Z", "2024-01-01T02:00:00Z"), // strictly after
            ("0 9-17/4 * * *", "", "2024-01-01T09:00:00Z", "2024-01-01T13:00:00Z"),
            ("5/20 * * * *", "", "2024-01-01T00:26:00Z", "2024-01-01T00:45:00Z"),
            ("59 23 31 12 *", "", "2024-12-31T23:59:00Z", "2025-12-31T23:59:00Z"),
            ("0 0 1 JAN,jul *", "", "2024-02-01T00:00:00Z", "2024-07-01T00:00:00Z"),
            ("0 9 * * *", "Asia/Kolkata", "2024-01-01T00:00:00Z", "2024-01-01T03:30:00Z"),
            // Feb 29, and 2100 is no leap year
            ("0 0 29 2 *", "", "2024-03-01T00:00:00Z", "2028-02-29T00:00:00Z"),
            ("0 0 29 2 *", "", "2096-03-01T00:00:00Z", "2104-02-29T00:00:00Z"),
            // both day fields restricted: either (Friday Oct 11, Sunday the 13th)
            ("0 0 13 * fri", "", "2024-10-05T00:00:00Z", "2024-10-11T00:00:00Z"),
            ("0 0 13 * fri", "", "2024-10-11T00:00:00Z", "2024-10-13T00:00:00Z"),
            ("0 0 30 2 mon", "", "2024-02-01T00:00:00Z", "2024-02-05T00:00:00Z"),
            // a step is a restriction: Monday the 8th, then Thursday the 11th
            ("0 0 */10 * mon", "", "2024-01-01T00:00:00Z", "2024-01-08T00:00:00Z"),
            ("0 0 */10 * mon", "", "2024-01-08T00:00:00Z", "2024-01-11T00:00:00Z"),
            // one day field `*`: both (the next Monday)
            ("0 0 * * mon", "", "2024-01-01T00:00:00Z", "2024-01-08T00:00:00Z"),
            // Sunday is 0 or 7, and `fri-sun` wraps to it
            ("0 12 * * 7", "", "2024-01-01T00:00:00Z", "2024-01-07T12:00:00Z"),
            ("0 0 * * fri-sun", "", "2024-01-06T00:00:00Z", "2024-01-07T00:00:00Z"),
            ("0 0 * * fri-sun", "", "2024-01-07T00:00:00Z", "2024-01-12T00:00:00Z"),
            // macros
            ("@hourly", "", "2024-01-01T00:30:00Z", "2024-01-01T01:00:00Z"),
            ("@daily", "", "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"),
            ("@midnight", "", "2024-01-01T12:00:00Z", "2024-01-02T00:00:00Z"),
            ("@weekly", "", "2024-01-01T00:00:00Z", "2024-01-07T00:00:00Z"),
            ("@monthly", "", "2024-01-15T00:00:00Z", "2024-02-01T00:00:00Z"),
            ("@yearly", "", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"),
            ("@ANNUALLY", "", "2024-06-01T00:00:00Z", "2025-01-01T00:00:00Z"),
            // Paris, 2024-03-31: 02:00 CET becomes 03:00 CEST; 02:30 fires at 03:30
            ("30 2 * * *", paris, "2024-03-30T12:00:00Z", "2024-03-31T01:30:00Z"),
            ("30 2 * * *", paris, "2024-03-31T01:30:00Z", "2024-04-01T00:30:00Z"),
            ("0,30 2 * * *", paris, "2024-03-30T12:00:00Z", "2024-03-31T01:00:00Z"),
            ("0,30 2 * * *", paris, "2024-03-31T01:00:00Z", "2024-03-31T01:30:00Z"),
            // hourly: 02:30 (as 03:30) and 03:30 are one fire
            ("30 * * * *", paris, "2024-03-31T00:30:00Z", "2024-03-31T01:30:00Z"),
            ("30 * * * *", paris, "2024-03-31T01:30:00Z", "2024-03-31T02:30:00Z"),
            // Paris, 2024-10-27: 03:00 CEST becomes 02:00 CET; 02:30 fires once, in CEST
            ("30 2 * * *", paris, "2024-10-26T12:00:00Z", "2024-10-27T00:30:00Z"),
            ("30 2 * * *", paris, "2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"),
            // hourly: both passes of the repeated hour
            ("30 * * * *", paris, "2024-10-26T23:45:00Z", "2024-10-27T00:30:00Z"),
            ("30 * * * *", paris, "2024-10-27T00:30:00Z", "2024-10-27T01:30:00Z"),
            ("30 * * * *", paris, "2024-10-27T01:30:00Z", "2024-10-27T02:30:00Z"),
            // New York, 2024-03-10: 02:00 EST becomes 03:00 EDT
            ("0 2 * * *", new_york, "2024-03-09T12:00:00Z", "2024-03-10T07:00:00Z"),
            ("0 2 * * *", new_york, "2024-03-10T07:00:00Z", "2024-03-11T06:00:00Z"),
            // New York, 2024-11-03: 02:00 EDT becomes 01:00 EST
            ("30 1 * * *", new_york, "2024-11-02T12:00:00Z", "2024-11-03T05:30:00Z"),
            ("30 1 * * *", new_york, "2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"),
            ("*/20 * * * *", new_york, "2024-11-03T05:45:00Z", "2024-11-03T06:00:00Z"),
        ];
        for (expression, tz, after, expected) in cases {
            assert_eq!(
                next(expression, tz, after),
                expected,
                "`{expression}` in `{tz}` after {after}"
            );
        }
        let s = Schedule::parse("30 2 * * *", time_zone(paris).unwrap()).unwrap();
        let t = s.next_after(at("2024-03-30T12:00:00Z")).unwrap();
        assert_eq!(s.show(t), "2024-03-31T03:30:00+02:00", "shown in its zone");
    }

    #[test]
    fn mistakes_are_named() {
        #[rustfmt::skip]
        let cases = [
            ("* * * *", "a schedule has 5 fields, minute hour day-of-month month day-of-week (like `0 3 * * mon`), got 4 in `* * * *`"),
            ("0 * * * * *", "got 6 in `0 * * * * *` (a seconds field is not supported)"),
            ("60 * * * *", "minute: 60 is out of range (0-59)"),
            ("* 24 * * *", "hour: 24 is out of range (0-23)"),
            ("* * 0 * *", "day-of-month: 0 is out of range (1-31)"),
            ("* * * 13 *", "month: 13 is out of range (1-12)"),
            ("* * * * 8", "day-of-week: 8 is out of range (0-7)"),
            ("x * * * *", "minute: `x` is not a number"),
            ("* * * foo *", "month: `foo` is not a number (1-12) or a month name (jan..dec)"),
            ("* * * * funday", "day-of-week: `funday` is not a number (0-7, Sunday 0 or 7) or a day name (sun..sat)"),
            ("*/0 * * * *", "minute: the step `0` in `*/0` must be a whole number of at least 1"),
            ("* 1-5/x * * *", "hour: the step `x` in `1-5/x` must be a whole number of at least 1"),
            ("30-10 * * * *", "minute: the range `30-10` runs backwards (30 comes after 10)"),
            ("0 0 * * sat-mon", "day-of-week: the range `sat-mon` runs backwards (sat comes after mon)"),
            ("1,,2 * * * *", "minute: an empty item in `1,,2` (a list is `a,b,c`)"),
            ("@reboot", "`@reboot` is not a macro this service knows: @hourly, @daily"),
            ("0 0 30 2 *", "day-of-month: no day `30` falls in month `2`: the schedule would never fire"),
            ("0 0 31 apr,jun *", "day-of-month: no day `31` falls in month `apr,jun`"),
        ];
        for (expression, expected) in cases {
            let e = Schedule::parse(expression, Tz::UTC)
                .unwrap_err()
                .to_string();
            assert!(e.contains(expected), "`{expression}`: {e}");
        }
        assert_eq!(time_zone("").unwrap(), Tz::UTC);
        assert_eq!(time_zone(" Europe/Paris ").unwrap(), Tz::Europe__Paris);
        let e = time_zone("europe/paris").unwrap_err().to_string();
        assert!(
            e.starts_with("`europe/paris` is not an IANA time zone name"),
            "{e}"
        );
    }

    #[test]
    fn a_minutely_schedule_steps_a_minute_at_a_time() {
        let s = Schedule::parse("* * * * *", time_zone("Pacific/Kiritimati").unwrap()).unwrap();
        let mut t = at("2024-01-01T00:00:30Z");
        for _ in 0..100 {
            t = s.next_after(t).unwrap();
        }
        assert_eq!(t, at("2024-01-01T01:40:00Z"));
    }

    mod replicas {
        use std::time::Duration;

        use mlops_proto::retraining::v1 as pb;
        use mlops_storage::{Db, DbOptions};

        use super::super::*;

        async fn store() -> (tempfile::TempDir, Store) {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::connect(&DbOptions {
                url: format!("sqlite://{}/r.db", dir.path().display()),
                max_connections: 2,
                acquire_timeout: Duration::from_secs(10),
                statement_timeout: Duration::from_secs(30),
            })
            .await
            .unwrap();
            db.migrate("retraining", &crate::store::migrations())
                .await
                .unwrap();
            let outbox = mlops_events::outbox::migrations("retraining");
            db.migrate("retraining-outbox", &outbox).await.unwrap();
            (dir, Store::new(db))
        }

        fn policy(schedule: &str) -> pb::Policy {
            let mut p = crate::policy::tests::policy();
            let t = p.triggers.as_mut().unwrap();
            (t.schedule, t.time_zone) = (schedule.into(), "Europe/Paris".into());
            p
        }

        async fn mark(store: &Store) -> i64 {
            store.schedules().await.unwrap()[0].1
        }

        #[tokio::test]
        async fn one_due_fire_starts_one_retrain_across_replicas() {
            let (_dir, store) = store().await;
            store.set_policy(policy("0 3 * * *")).await.unwrap();
            let now = Utc::now();
            let fired = check(&store, now).await.unwrap();
            assert!(
                fired.is_empty(),
                "a new schedule counts from when it was set"
            );

            // two replicas check two days later (two fire times passed)
            let later = now + TimeDelta::days(2);
            let stale = mark(&store).await;
            let (a, b) = tokio::join!(check(&store, later), check(&store, later));
            let fired: Vec<_> = a.unwrap().into_iter().chain(b.unwrap()).collect();
            assert!(matches!(fired[..], [(_, Fire::Started(_))]), "{fired:?}");
            let retrains = store.retrains("m", 10).await.unwrap();
            assert_eq!(retrains.len(), 1);
            assert_eq!(retrains[0].trigger, "schedule");
            let detail = &retrains[0].trigger_detail;
            assert!(
                detail.starts_with("schedule `0 3 * * *` (Europe/Paris): fire time ")
                    && detail.contains("+0")
                    && detail.ends_with("(one catch-up retrain)"),
                "{detail}"
            );
            // a replica that read the mark before the fire changes nothing
            let trigger = Trigger {
                kind: "schedule",
                detail: "late".into(),
            };
            let late = store.fire_schedule("m", stale, later.timestamp_millis(), &trigger);
            assert!(matches!(late.await.unwrap(), Fire::Handled));
            assert!(check(&store, later).await.unwrap().is_empty());

            // the next day's fire: refused (a retrain is under way), done all the same, and
            // the cooldown's clock is left alone
            let started_at = || async {
                sqlx::query_scalar::<_, i64>("SELECT last_started_at FROM retraining_policies")
                    .fetch_one(store.db().reader())
                    .await
                    .unwrap()
            };
            let before = started_at().await;
            let next_day = later + TimeDelta::days(1);
            let fired = check(&store, next_day).await.unwrap();
            assert!(
                matches!(fired[..], [(_, Fire::Refused(Refused::Busy(1)))]),
                "{fired:?}"
            );
            assert!(check(&store, next_day).await.unwrap().is_empty());
            assert_eq!(started_at().await, before);
            assert_eq!(store.retrains("m", 10).await.unwrap().len(), 1);

            // another change keeps the mark; a new schedule counts from its setting
            let mut p = policy("0 3 * * *");
            p.cooldown_seconds = 60;
            store.set_policy(p).await.unwrap();
            assert_eq!(mark(&store).await, next_day.timestamp_millis());
            let set = mlops_storage::now_millis();
            store.set_policy(policy("0 4 * * *")).await.unwrap();
            assert!((set..=mlops_storage::now_millis()).contains(&mark(&store).await));
        }
    }
}
