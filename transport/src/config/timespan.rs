//! Exchange time spans: `[d.]hh:mm:ss`, and the short forms `90s`, `15m`, `4h`, `2d`.
//!
//! Hand-written rather than taken from a duration crate: the Exchange form (days
//! before a dot, hours bounded to 23) is what administrators copy from Exchange
//! documentation, and no well-kept crate parses it.
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::time::Duration;

/// A duration as written in the config file and the CRDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeSpan(pub Duration);

const SECS_PER_MINUTE: u64 = 60;
const SECS_PER_HOUR: u64 = 60 * SECS_PER_MINUTE;
const SECS_PER_DAY: u64 = 24 * SECS_PER_HOUR;

/// The accepted forms, quoted in every parse error.
const FORMS: &str = "write [d.]hh:mm:ss (e.g. 00:15:00, 2.00:00:00, 1.12:30:00) \
                     or a whole number followed by s, m, h or d (e.g. 90s, 15m, 4h, 2d)";

/// What the CRD schema accepts: the Exchange form (optionally with a fraction of
/// a second, as Display writes sub-second spans) or a short form. Plain ECMA/RE2
/// syntax so that both JSON Schema tools and the Kubernetes API server read it.
pub const TIME_SPAN_PATTERN: &str =
    r"^\s*([0-9]+\.)?([01]?[0-9]|2[0-3]):[0-5]?[0-9]:[0-5]?[0-9](\.[0-9]{1,9})?\s*$|^\s*[0-9]+[smhd]\s*$";

impl TimeSpan {
    pub fn as_duration(self) -> Duration {
        self.0
    }
    pub fn from_secs(secs: u64) -> Self {
        TimeSpan(Duration::from_secs(secs))
    }
    pub fn from_mins(mins: u64) -> Self {
        TimeSpan(Duration::from_secs(mins * SECS_PER_MINUTE))
    }
    pub fn from_hours(hours: u64) -> Self {
        TimeSpan(Duration::from_secs(hours * SECS_PER_HOUR))
    }
    pub fn from_days(days: u64) -> Self {
        TimeSpan(Duration::from_secs(days * SECS_PER_DAY))
    }
}

impl From<Duration> for TimeSpan {
    fn from(d: Duration) -> Self {
        TimeSpan(d)
    }
}

impl From<TimeSpan> for Duration {
    fn from(t: TimeSpan) -> Self {
        t.0
    }
}

fn refuse(value: &str, why: &str) -> String {
    format!("\"{value}\" is not a time span ({why}): {FORMS}")
}

/// A run of ASCII digits as a number: `Ok(None)` when empty or not all digits,
/// an error naming the value when it does not fit.
fn digits(value: &str, s: &str) -> Result<Option<u64>, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| refuse(value, "too large"))
}

/// `hh`, `mm` or `ss` of the Exchange form: one or two digits, at most `max`.
fn clock_field(value: &str, field: &str, name: &str, max: u64) -> Result<u64, String> {
    if field.is_empty() || field.len() > 2 {
        return Err(refuse(value, &format!("{name} must have one or two digits")));
    }
    match digits(value, field)? {
        Some(n) if n <= max => Ok(n),
        Some(_) => Err(refuse(value, &format!("{name} must be 0 to {max}"))),
        None => Err(refuse(value, &format!("{name} must be a number"))),
    }
}

fn parse_short(value: &str, number: &str, unit: u64) -> Result<TimeSpan, String> {
    let n = digits(value, number)?.ok_or_else(|| refuse(value, "the number must be a non-negative whole number"))?;
    let secs = n.checked_mul(unit).ok_or_else(|| refuse(value, "too large"))?;
    Ok(TimeSpan::from_secs(secs))
}

fn parse_exchange(value: &str, s: &str) -> Result<TimeSpan, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [head, mm, ss] = parts.as_slice() else {
        return Err(refuse(value, "expected hours, minutes and seconds separated by colons"));
    };
    let (days, hh) = match head.split_once('.') {
        Some((d, h)) => {
            (digits(value, d)?.ok_or_else(|| refuse(value, "days must be a non-negative whole number"))?, h)
        }
        None => (0, *head),
    };
    let hours = clock_field(value, hh, "hours", 23)?;
    let minutes = clock_field(value, mm, "minutes", 59)?;
    // Seconds may carry a fraction (.NET writes up to 7 digits; we keep up to 9).
    let (ss, fraction) = match ss.split_once('.') {
        Some((whole, frac)) => (whole, Some(frac)),
        None => (*ss, None),
    };
    let seconds = clock_field(value, ss, "seconds", 59)?;
    let nanos = match fraction {
        None => 0,
        Some(f) if (1..=9).contains(&f.len()) => {
            let n = digits(value, f)?.ok_or_else(|| refuse(value, "the fraction of a second must be digits"))?;
            // Scale to nanoseconds: "5" is 500_000_000.
            (n * 10u64.pow(9 - f.len() as u32)) as u32
        }
        Some(_) => return Err(refuse(value, "the fraction of a second must have 1 to 9 digits")),
    };
    let secs = days
        .checked_mul(SECS_PER_DAY)
        .and_then(|d| d.checked_add(hours * SECS_PER_HOUR + minutes * SECS_PER_MINUTE + seconds))
        .ok_or_else(|| refuse(value, "too large"))?;
    Ok(TimeSpan(Duration::new(secs, nanos)))
}

impl std::str::FromStr for TimeSpan {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        let s = value.trim();
        if s.is_empty() {
            return Err(format!("an empty value is not a time span: {FORMS}"));
        }
        if s.contains(':') {
            return parse_exchange(value, s);
        }
        let unit = match s.as_bytes()[s.len() - 1] {
            b's' => 1,
            b'm' => SECS_PER_MINUTE,
            b'h' => SECS_PER_HOUR,
            b'd' => SECS_PER_DAY,
            _ => return Err(refuse(value, "no unit and no colons")),
        };
        parse_short(value, &s[..s.len() - 1], unit)
    }
}

/// Written back in the Exchange form, `[d.]hh:mm:ss`, days only from one day on,
/// a fraction of a second only when there is one.
impl std::fmt::Display for TimeSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.0.as_secs();
        let days = total / SECS_PER_DAY;
        let rest = total % SECS_PER_DAY;
        let (h, m, s) = (rest / SECS_PER_HOUR, rest % SECS_PER_HOUR / SECS_PER_MINUTE, rest % SECS_PER_MINUTE);
        if days > 0 {
            write!(f, "{days}.")?;
        }
        write!(f, "{h:02}:{m:02}:{s:02}")?;
        let nanos = self.0.subsec_nanos();
        if nanos > 0 {
            let frac = format!("{nanos:09}");
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        Ok(())
    }
}

impl Serialize for TimeSpan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeSpan {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for TimeSpan {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TimeSpan".into()
    }
    fn json_schema(_g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": TIME_SPAN_PATTERN,
            "description": "A time span: [d.]hh:mm:ss as Exchange writes it (00:15:00, 2.00:00:00), \
                            or a whole number of seconds, minutes, hours or days (90s, 15m, 4h, 2d).",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> TimeSpan {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_exchange_form() {
        assert_eq!(ts("00:15:00"), TimeSpan::from_secs(15 * 60));
        assert_eq!(ts("2.00:00:00"), TimeSpan::from_secs(2 * 86400));
        assert_eq!(ts("1.12:30:00"), TimeSpan::from_secs(86400 + 12 * 3600 + 30 * 60));
        assert_eq!(ts("04:00:00"), TimeSpan::from_secs(4 * 3600));
        assert_eq!(ts("00:00:01"), TimeSpan::from_secs(1));
        assert_eq!(ts("23:59:59"), TimeSpan::from_secs(86399));
        assert_eq!(ts("400.00:00:00"), TimeSpan::from_secs(400 * 86400));
        assert_eq!(ts("0:5:0"), TimeSpan::from_secs(300));
        assert_eq!(ts("  00:01:30 \n"), TimeSpan::from_secs(90));
        assert_eq!(ts("00:00:01.5"), TimeSpan(Duration::from_millis(1500)));
    }

    #[test]
    fn parses_short_forms() {
        assert_eq!(ts("90s"), TimeSpan::from_secs(90));
        assert_eq!(ts("15m"), TimeSpan::from_secs(900));
        assert_eq!(ts("4h"), TimeSpan::from_secs(4 * 3600));
        assert_eq!(ts("2d"), TimeSpan::from_secs(2 * 86400));
        assert_eq!(ts("0s"), TimeSpan::from_secs(0));
        assert_eq!(ts(" 36h "), TimeSpan::from_secs(36 * 3600));
    }

    #[test]
    fn refuses_malformed_values_with_a_sentence() {
        for (bad, why) in [
            ("", "empty"),
            ("   ", "empty"),
            ("15", "no unit and no colons"),
            ("15x", "no unit and no colons"),
            ("-5m", "non-negative whole number"),
            ("1.5h", "non-negative whole number"),
            ("m", "non-negative whole number"),
            ("24:00:00", "hours must be 0 to 23"),
            ("00:60:00", "minutes must be 0 to 59"),
            ("00:00:60", "seconds must be 0 to 59"),
            ("00:15", "hours, minutes and seconds"),
            ("1:00:00:00", "hours, minutes and seconds"),
            ("-1.00:00:00", "days must be a non-negative whole number"),
            ("x.00:00:00", "days must be a non-negative whole number"),
            ("000:15:00", "one or two digits"),
            ("00::00", "one or two digits"),
            ("0a:00:00", "hours must be a number"),
            ("00:00:00.1234567890", "1 to 9 digits"),
            ("00:00:00.", "1 to 9 digits"),
            ("15 m", "non-negative whole number"),
        ] {
            let err = bad.parse::<TimeSpan>().expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(err.contains("[d.]hh:mm:ss") && err.contains("90s, 15m, 4h, 2d"), "{err}");
            if !bad.trim().is_empty() {
                assert!(err.contains(&format!("\"{bad}\"")), "{err}");
            }
        }
    }

    #[test]
    fn refuses_overflow() {
        let err = "18446744073709551615d".parse::<TimeSpan>().expect_err("overflow");
        assert!(err.contains("too large"), "{err}");
        let err = "213503982334602.00:00:00".parse::<TimeSpan>().expect_err("overflow");
        assert!(err.contains("too large"), "{err}");
        assert_eq!(ts("213503982334601.00:00:00"), TimeSpan::from_secs(213503982334601 * 86400));
        let err = "99999999999999999999999s".parse::<TimeSpan>().expect_err("overflow");
        assert!(err.contains("too large"), "{err}");
    }

    #[test]
    fn displays_the_exchange_form() {
        assert_eq!(TimeSpan::from_secs(4 * 3600).to_string(), "04:00:00");
        assert_eq!(TimeSpan::from_secs(2 * 86400).to_string(), "2.00:00:00");
        assert_eq!(TimeSpan::from_secs(90).to_string(), "00:01:30");
        assert_eq!(TimeSpan::from_secs(86400 + 12 * 3600 + 30 * 60).to_string(), "1.12:30:00");
        assert_eq!(TimeSpan::from_secs(0).to_string(), "00:00:00");
        assert_eq!(TimeSpan(Duration::from_millis(1500)).to_string(), "00:00:01.5");
        assert_eq!(ts("36h").to_string(), "1.12:00:00");
    }

    #[test]
    fn round_trips_through_display() {
        for secs in [0, 1, 59, 60, 61, 3599, 3600, 86399, 86400, 86401, 90 * 86400 + 7, u64::MAX / 2] {
            let t = TimeSpan::from_secs(secs);
            assert_eq!(ts(&t.to_string()), t, "{t}");
        }
        let odd = TimeSpan(Duration::new(12, 123_456_789));
        assert_eq!(ts(&odd.to_string()), odd);
    }

    #[test]
    fn serde_reads_both_forms_and_writes_exchange_form() {
        let v: Vec<TimeSpan> = serde_yaml::from_str("[00:15:00, 4h, '2.00:00:00']").unwrap();
        assert_eq!(v, [TimeSpan::from_mins(15), TimeSpan::from_hours(4), TimeSpan::from_days(2)]);
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"["00:15:00","04:00:00","2.00:00:00"]"#);
        let err = serde_yaml::from_str::<TimeSpan>("25:00:00").expect_err("hours");
        assert!(err.to_string().contains("hours must be 0 to 23"), "{err}");
    }

    #[test]
    fn schema_is_a_string_with_the_pattern() {
        let schema = serde_json::to_value(schemars::schema_for!(TimeSpan)).unwrap();
        assert_eq!(schema["type"], "string");
        assert_eq!(schema["pattern"], TIME_SPAN_PATTERN);
        assert!(schema["description"].as_str().unwrap().contains("[d.]hh:mm:ss"));
        // The pattern has one alternative for each form the parser accepts.
        let pattern = schema["pattern"].as_str().unwrap();
        assert!(pattern.contains("2[0-3]") && pattern.contains("[smhd]"));
    }
}
