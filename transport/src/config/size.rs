//! Byte sizes as Exchange writes them: `36MB`, `10KB`, `1048576`, `unlimited`.
//!
//! Exchange's units are binary (1KB = 1024 bytes), unlike most size crates'
//! (which read `MB` as 10^6), so the parser is hand-written.
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes. `unlimited` is `u64::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

pub const KB: u64 = 1024;
pub const MB: u64 = 1024 * KB;
pub const GB: u64 = 1024 * MB;
pub const TB: u64 = 1024 * GB;

/// Units from the largest, as Display tries them.
const UNITS: [(&str, u64); 4] = [("TB", TB), ("GB", GB), ("MB", MB), ("KB", KB)];

const FORMS: &str = "write a whole number of bytes (1048576), a whole number followed by B, KB, MB, GB or TB \
                     (512B, 10KB, 36MB, 1GB; 1KB = 1024 bytes), or unlimited";

/// What the CRD schema accepts for the string form (the integer form is any
/// non-negative integer). Character classes rather than `(?i)`, which ECMA
/// regular expressions lack.
pub const BYTE_SIZE_PATTERN: &str = r"^\s*([0-9]+\s*([kKmMgGtT]?[bB])?|[uU][nN][lL][iI][mM][iI][tT][eE][dD])\s*$";

impl ByteSize {
    pub const UNLIMITED: ByteSize = ByteSize(u64::MAX);

    pub const fn kb(n: u64) -> Self {
        ByteSize(n * KB)
    }
    pub const fn mb(n: u64) -> Self {
        ByteSize(n * MB)
    }
    pub const fn gb(n: u64) -> Self {
        ByteSize(n * GB)
    }

    pub fn bytes(self) -> u64 {
        self.0
    }

    pub fn is_unlimited(self) -> bool {
        self == Self::UNLIMITED
    }
}

fn refuse(value: &str, why: &str) -> String {
    format!("\"{value}\" is not a size ({why}): {FORMS}")
}

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        let s = value.trim();
        if s.is_empty() {
            return Err(format!("an empty value is not a size: {FORMS}"));
        }
        if s.eq_ignore_ascii_case("unlimited") {
            return Ok(ByteSize::UNLIMITED);
        }
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = (&s[..split], s[split..].trim_start());
        if number.is_empty() {
            return Err(refuse(value, "it must start with a non-negative whole number"));
        }
        let multiplier = match unit.to_ascii_uppercase().as_str() {
            "" | "B" => 1,
            "KB" => KB,
            "MB" => MB,
            "GB" => GB,
            "TB" => TB,
            _ => return Err(refuse(value, &format!("unknown unit \"{unit}\""))),
        };
        number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(multiplier))
            .map(ByteSize)
            .ok_or_else(|| refuse(value, "too large"))
    }
}

/// The largest unit that divides the size exactly: `36MB`, `10KB`, `1025B`.
impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_unlimited() {
            return f.write_str("unlimited");
        }
        let n = self.0;
        match UNITS.iter().find(|(_, size)| n != 0 && n.is_multiple_of(*size)) {
            Some((unit, size)) => write!(f, "{}{unit}", n / size),
            None => write!(f, "{n}B"),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size such as 36MB, a number of bytes, or unlimited")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v).map(ByteSize).map_err(|_| E::custom(format!("{v} is not a size (negative): {FORMS}")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl schemars::JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }
    /// Int-or-string as Kubernetes structural schemas require: no top-level
    /// `type`, and `anyOf` exactly `[{type: integer}, {type: string}]` (the API
    /// server compares it literally, so the string pattern sits beside it, where
    /// it applies to strings only; this is how `resource.Quantity` is written).
    fn json_schema(_g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "x-kubernetes-int-or-string": true,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": BYTE_SIZE_PATTERN,
            "minimum": 0,
            "description": "A size: a number of bytes (1048576), or a number with B, KB, MB, GB or TB \
                            (1KB = 1024 bytes: 36MB, 10KB), or unlimited.",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(s: &str) -> ByteSize {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_exchange_sizes_with_binary_units() {
        assert_eq!(size("36MB").bytes(), 36 * 1024 * 1024);
        assert_eq!(size("10KB").bytes(), 10 * 1024);
        assert_eq!(size("1GB").bytes(), 1 << 30);
        assert_eq!(size("1TB").bytes(), 1 << 40);
        assert_eq!(size("512B").bytes(), 512);
        assert_eq!(size("36 MB").bytes(), 36 << 20);
        assert_eq!(size("36mb").bytes(), 36 << 20);
        assert_eq!(size("10Kb").bytes(), 10 << 10);
        assert_eq!(size("1048576").bytes(), 1 << 20);
        assert_eq!(size(" 0 ").bytes(), 0);
        assert_eq!(size("unlimited"), ByteSize::UNLIMITED);
        assert_eq!(size("Unlimited"), ByteSize::UNLIMITED);
    }

    #[test]
    fn refuses_malformed_sizes_with_a_sentence() {
        for (bad, why) in [
            ("", "empty"),
            ("MB", "must start with a non-negative whole number"),
            ("-5MB", "must start with a non-negative whole number"),
            ("1.5MB", "unknown unit \".5MB\""),
            ("36M", "unknown unit \"M\""),
            ("36MiB", "unknown unit \"MiB\""),
            ("36 MB x", "unknown unit \"MB x\""),
            ("lots", "must start with a non-negative whole number"),
        ] {
            let err = bad.parse::<ByteSize>().expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(err.contains("36MB") && err.contains("unlimited"), "{err}");
        }
    }

    #[test]
    fn refuses_overflow() {
        let err = "17179869184GB".parse::<ByteSize>().expect_err("overflow");
        assert!(err.contains("too large"), "{err}");
        let err = "18446744073709551616".parse::<ByteSize>().expect_err("overflow");
        assert!(err.contains("too large"), "{err}");
        assert_eq!(size("16777215TB").bytes(), 16777215 << 40);
    }

    #[test]
    fn displays_the_largest_exact_unit() {
        assert_eq!(ByteSize::mb(36).to_string(), "36MB");
        assert_eq!(ByteSize::kb(10).to_string(), "10KB");
        assert_eq!(ByteSize(1025).to_string(), "1025B");
        assert_eq!(ByteSize(1536 * 1024).to_string(), "1536KB");
        assert_eq!(ByteSize::gb(2).to_string(), "2GB");
        assert_eq!(ByteSize(3 << 40).to_string(), "3TB");
        assert_eq!(ByteSize(0).to_string(), "0B");
        assert_eq!(ByteSize::UNLIMITED.to_string(), "unlimited");
        for n in [0, 1, 1023, 1024, 1025, 36 << 20, (1 << 40) + 1024, u64::MAX - 1, u64::MAX] {
            assert_eq!(size(&ByteSize(n).to_string()), ByteSize(n));
        }
    }

    #[test]
    fn deserializes_integers_and_strings() {
        let v: Vec<ByteSize> = serde_yaml::from_str("[1048576, 36MB, '10 KB', unlimited]").unwrap();
        assert_eq!(v, [ByteSize::mb(1), ByteSize::mb(36), ByteSize::kb(10), ByteSize::UNLIMITED]);
        let v: Vec<ByteSize> = serde_json::from_str(r#"[2048, "1GB"]"#).unwrap();
        assert_eq!(v, [ByteSize::kb(2), ByteSize::gb(1)]);
        assert_eq!(serde_json::to_string(&[ByteSize::mb(36), ByteSize(1025)]).unwrap(), r#"["36MB","1025B"]"#);
        for bad in ["-1", "1.5", "true", "36 parsecs"] {
            let err = serde_yaml::from_str::<ByteSize>(bad).expect_err(bad).to_string();
            assert!(err.contains("size"), "{bad}: {err}");
        }
    }

    #[test]
    fn schema_is_int_or_string_with_a_pattern() {
        let schema = serde_json::to_value(schemars::schema_for!(ByteSize)).unwrap();
        assert_eq!(schema["x-kubernetes-int-or-string"], true);
        assert!(schema.get("type").is_none(), "{schema}");
        // Exactly the anyOf the API server accepts for int-or-string.
        assert_eq!(schema["anyOf"], serde_json::json!([{"type": "integer"}, {"type": "string"}]));
        assert_eq!(schema["pattern"], BYTE_SIZE_PATTERN);
        assert!(schema["description"].as_str().unwrap().contains("1KB = 1024 bytes"));
    }
}
