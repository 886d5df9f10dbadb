//! TTLs as definition files write them: a number of seconds, or a duration such as
//! `1d`, `1h30m`, `500ms`, `10ns`; `0` is unlimited, as in Feast.

const UNITS: [(&str, i64); 7] = [
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000),
];

/// Parses a TTL into nanoseconds (0: unlimited).
pub fn parse_ttl(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let explain = "a TTL is a number of seconds or a duration such as 1d, 12h, 1h30m, 500ms, 10ns (0 is unlimited)";
    if text.starts_with('-') {
        return Err(format!("a negative TTL ({text}) is not allowed: {explain}"));
    }
    if let Ok(secs) = text.parse::<i64>() {
        return secs
            .checked_mul(1_000_000_000)
            .ok_or_else(|| format!("TTL {text} is too long"));
    }
    if text.is_empty() {
        return Err(format!("empty TTL: {explain}"));
    }
    let mut total: i64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("cannot read TTL `{text}`: {explain}"));
        }
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("TTL `{text}` is too long"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        let Some(&(_, scale)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!("unknown unit `{unit}` in TTL `{text}`: {explain}"));
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("TTL `{text}` is too long"))?;
    }
    Ok(total)
}

/// Writes a TTL the way `parse_ttl` reads it back (`0` for unlimited).
pub fn format_ttl(nanos: i64) -> String {
    if nanos == 0 {
        return "0".into();
    }
    let mut out = String::new();
    let mut rest = nanos;
    for (unit, scale) in UNITS.iter().rev() {
        if rest >= *scale {
            out.push_str(&format!("{}{unit}", rest / scale));
            rest %= scale;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_read_as_feast_users_write_them() {
        assert_eq!(parse_ttl("0"), Ok(0));
        assert_eq!(parse_ttl("86400"), Ok(86_400_000_000_000));
        assert_eq!(parse_ttl("1d"), Ok(86_400_000_000_000));
        assert_eq!(parse_ttl("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_ttl("500ms"), Ok(500_000_000));
        assert_eq!(parse_ttl("1ns"), Ok(1));
        assert!(parse_ttl("-1").unwrap_err().contains("negative"));
        assert!(parse_ttl("-1h").unwrap_err().contains("negative"));
        assert!(parse_ttl("1w").unwrap_err().contains("unknown unit `w`"));
        assert!(parse_ttl("h").unwrap_err().contains("cannot read"));
        assert!(parse_ttl("999999999999d").unwrap_err().contains("too long"));
    }

    #[test]
    fn ttls_format_back_to_what_parses() {
        for n in [
            0,
            1,
            999,
            500_000_000,
            86_400_000_000_000,
            5_400_000_000_123,
        ] {
            assert_eq!(parse_ttl(&format_ttl(n)), Ok(n), "{}", format_ttl(n));
        }
        assert_eq!(format_ttl(5_400_000_000_000), "1h30m");
    }
}
