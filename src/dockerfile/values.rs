//! Value helpers for what can only be validated after expansion: `--chmod` modes (octal or
//! symbolic), `EXPOSE` ports, and Go durations (`HEALTHCHECK --interval=1m30s`).

use std::time::Duration;

use super::error::ParseError;

/// Parse a `--chmod` mode as BuildKit does: octal (`755`, `0644`, at most `7777`) or symbolic
/// (`u+x,g-w`, `a=rX`); see [`Chmod`](crate::layers::Chmod).
pub fn parse_chmod(s: &str) -> Result<crate::layers::Chmod, ParseError> {
    crate::layers::Chmod::parse(s).map_err(|e| ParseError::value("--chmod mode", s, &e.0))
}

/// Parse one `EXPOSE` word, `port[-port][/tcp|udp|sctp]`, into `"port/proto"` strings
/// (a range gives one per port; the protocol defaults to `tcp` and is lower-cased).
pub fn parse_expose(word: &str) -> Result<Vec<String>, ParseError> {
    const EXPECTED: &str = "expected port[-port][/tcp|udp|sctp], e.g. 80, 8000-8010/udp";
    let bad = || ParseError::value("EXPOSE port", word, EXPECTED);
    let (ports, proto) = match word.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (word, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad());
    }
    let port = |s: &str| -> Result<u16, ParseError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<u16>().map_err(|_| bad())
    };
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(ports)?;
            (p, p)
        }
    };
    if end < start {
        return Err(bad());
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// Parse a Go duration (`300ms`, `1.5h`, `1m30s`, `0`): a sequence of decimal numbers
/// each with a unit `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`. Negative durations are rejected.
pub fn parse_duration(s: &str) -> Result<Duration, ParseError> {
    let bad = |why: &str| ParseError::value("duration", s, why);
    const EXPECTED: &str = "expected a duration such as 30s, 1m30s or 500ms";
    let mut rest = s;
    if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    } else if let Some(r) = rest.strip_prefix('-') {
        if r == "0" {
            return Ok(Duration::ZERO);
        }
        return Err(bad("a duration cannot be negative"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad(EXPECTED));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = rest.get(..int_len).unwrap_or("");
        rest = rest.get(int_len..).unwrap_or("");
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = r.get(..n).unwrap_or("");
            rest = r.get(n..).unwrap_or("");
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad(EXPECTED));
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = rest.get(..unit_len).unwrap_or("");
        rest = rest.get(unit_len..).unwrap_or("");
        let nanos_per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(bad("missing unit: expected ns, us, ms, s, m or h")),
            _ => return Err(bad("unknown unit: expected ns, us, ms, s, m or h")),
        };
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| bad("number too large"))?
        };
        let mut value = int
            .checked_mul(nanos_per)
            .ok_or_else(|| bad("number too large"))?;
        let mut scale = nanos_per;
        for d in frac_part.bytes().take(30) {
            scale /= 10;
            if scale == 0 {
                break;
            }
            value = value.saturating_add(u128::from(d - b'0') * scale);
        }
        total = total
            .checked_add(value)
            .ok_or_else(|| bad("number too large"))?;
        if total > i64::MAX as u128 {
            return Err(bad("number too large"));
        }
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| bad("number too large"))?;
    let nanos = u32::try_from(total % 1_000_000_000).map_err(|_| bad("number too large"))?;
    Ok(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod() {
        use crate::layers::Chmod;
        assert_eq!(parse_chmod("755").unwrap(), Chmod::Octal(0o755));
        assert_eq!(parse_chmod("0644").unwrap(), Chmod::Octal(0o644));
        assert_eq!(parse_chmod("4755").unwrap(), Chmod::Octal(0o4755));
        assert!(matches!(parse_chmod("u+x").unwrap(), Chmod::Symbolic(_)));
        for bad in ["", "8", "u", "75a", "-1", "77777", "010000", "u!x"] {
            assert!(parse_chmod(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_chmod("9").unwrap_err().at_line(4).to_string(),
            "invalid --chmod mode \"9\" (Dockerfile:4): expected an octal mode between 0 and 7777 (e.g. 755 or 0644), or a symbolic mode such as u+x,g-w or a=rX"
        );
    }

    #[test]
    fn expose() {
        assert_eq!(parse_expose("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(parse_expose("53/UDP").unwrap(), vec!["53/udp"]);
        assert_eq!(
            parse_expose("8000-8002/sctp").unwrap(),
            vec!["8000/sctp", "8001/sctp", "8002/sctp"]
        );
        for bad in ["", "x", "80/icmp", "70000", "90-80", "-80", "80-", "8 0"] {
            assert!(parse_expose(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("2us").unwrap(), Duration::from_micros(2));
        assert_eq!(parse_duration(".5s").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        for bad in [
            "",
            "5",
            "s",
            "1x",
            "-1s",
            ".s",
            "99999999999999999999h",
            "1s2",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
