//! `HumanDuration` (`5m`, `1h30m`, `500ms`) and `FileMode` (`"0644"`): small values users
//! write as strings, parsed once at the boundary.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

pub const DURATION_PATTERN: &str = "^([0-9]{1,12}(ms|s|m|h|d))+$";
/// The most digits a number of a duration has (`DURATION_PATTERN` says the same).
const MAX_DURATION_DIGITS: usize = 12;
pub const MODE_PATTERN: &str = "^0?[0-7]{3,4}$";

/// A duration written the way people write them: `30s`, `5m`, `1h30m`, `500ms`, `2d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HumanDuration(Duration);

impl HumanDuration {
    pub fn from_duration(duration: Duration) -> HumanDuration {
        HumanDuration(duration)
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn parse(text: &str) -> Result<HumanDuration, String> {
        let invalid =
            || format!("`{text}` is not a duration; write it like `30s`, `5m`, `1h30m` or `500ms`");
        let mut total = Duration::ZERO;
        let mut rest = text;
        if rest.is_empty() {
            return Err(invalid());
        }
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .ok_or_else(invalid)?;
            let (number, tail) = rest.split_at(digits);
            // As `DURATION_PATTERN` says: more is no duration anyone means, and 12 digits of
            // days still fit the arithmetic.
            if number.len() > MAX_DURATION_DIGITS {
                return Err(format!(
                    "`{text}` is not a duration drover can wait for: a number has at most {MAX_DURATION_DIGITS} digits"
                ));
            }
            let number: u64 = number.parse().map_err(|_| invalid())?;
            let unit_len = tail
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_len);
            let part = match unit {
                "ms" => Duration::from_millis(number),
                "s" => Duration::from_secs(number),
                "m" => Duration::from_secs(number.saturating_mul(60)),
                "h" => Duration::from_secs(number.saturating_mul(3600)),
                "d" => Duration::from_secs(number.saturating_mul(86_400)),
                _ => return Err(invalid()),
            };
            total = total.saturating_add(part);
            rest = tail;
        }
        Ok(HumanDuration(total))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        let mut rest = ms;
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
            ("ms", 1),
        ] {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl TryFrom<String> for HumanDuration {
    type Error = String;
    fn try_from(text: String) -> Result<HumanDuration, String> {
        HumanDuration::parse(&text)
    }
}

impl From<HumanDuration> for String {
    fn from(d: HumanDuration) -> String {
        d.to_string()
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration such as `30s`, `5m`, `1h30m` or `500ms`."
        })
    }
}

/// Unix permission bits, written as an octal string such as `"0644"`.
///
/// A string, not a number: in YAML 1.2 an unquoted `0644` is the decimal 644, and silently
/// reading it either way would be a security bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FileMode(u32);

impl FileMode {
    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn parse(text: &str) -> Result<FileMode, String> {
        let digits = text
            .strip_prefix('0')
            .filter(|d| d.len() >= 3)
            .unwrap_or(text);
        if !(3..=4).contains(&digits.len()) {
            return Err(format!(
                "`{text}` is not a file mode; write it in octal like \"0644\""
            ));
        }
        u32::from_str_radix(digits, 8)
            .map(FileMode)
            .map_err(|_| format!("`{text}` is not a file mode; write it in octal like \"0644\""))
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl TryFrom<String> for FileMode {
    type Error = String;
    fn try_from(text: String) -> Result<FileMode, String> {
        FileMode::parse(&text)
    }
}

impl From<FileMode> for String {
    fn from(m: FileMode) -> String {
        m.to_string()
    }
}

impl JsonSchema for FileMode {
    fn schema_name() -> Cow<'static, str> {
        "FileMode".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": MODE_PATTERN,
            "description": "Permission bits in octal, quoted: \"0644\"."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_with_an_absurd_number_is_refused_with_why() {
        let error = HumanDuration::parse("99999999999999999999d").unwrap_err();
        assert!(error.contains("at most 12 digits"), "{error}");
        assert!(HumanDuration::parse("999999999999d").is_ok());
        assert!(HumanDuration::parse("1234567890123s").is_err());
    }

    #[test]
    fn durations_parse_and_print_back() {
        for (text, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("2d", 172_800_000),
        ] {
            let d = HumanDuration::parse(text).unwrap();
            assert_eq!(d.as_duration().as_millis(), ms);
            assert_eq!(d.to_string(), text);
        }
        for bad in ["", "5", "m", "5 m", "5min", "1.5s", "-1s"] {
            assert!(HumanDuration::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes_are_octal_strings() {
        assert_eq!(FileMode::parse("0644").unwrap().bits(), 0o644);
        assert_eq!(FileMode::parse("755").unwrap().bits(), 0o755);
        assert_eq!(FileMode::parse("1777").unwrap().bits(), 0o1777);
        assert_eq!(FileMode::parse("644").unwrap().to_string(), "0644");
        for bad in ["0688", "64", "12345", "rw-r--r--"] {
            assert!(FileMode::parse(bad).is_err(), "{bad}");
        }
    }
}
