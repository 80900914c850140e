//! Kubernetes resource quantities as exact integers, for `resourceFieldRef` and capacity.
//!
//! A quantity is held in nano-units (10⁻⁹) in an `i128`, which covers every
//! suffix from `n` to `Ei` without rounding.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

const NANO: i128 = 1_000_000_000;

/// A parse error with the offending text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid quantity {0:?}")]
pub struct QuantityError(pub String);

/// Parses a quantity (`500m`, `2`, `128Mi`, `1G`, `1.5`, `1e3`) into nano-units.
pub fn parse_nanos(text: &str) -> Result<i128, QuantityError> {
    let err = || QuantityError(text.to_string());
    let s = text.trim();
    if s.is_empty() {
        return Err(err());
    }
    let (sign, s) = match s.as_bytes()[0] {
        b'-' => (-1, &s[1..]),
        b'+' => (1, &s[1..]),
        _ => (1, s),
    };
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    if number.is_empty() || number == "." {
        return Err(err());
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if frac_part.contains('.') || frac_part.len() > 9 {
        return Err(err());
    }
    let int: i128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().map_err(|_| err())?
    };
    let frac: i128 = if frac_part.is_empty() {
        0
    } else {
        let padded = format!("{frac_part:0<9}");
        padded.parse().map_err(|_| err())?
    };
    let base = int
        .checked_mul(NANO)
        .and_then(|v| v.checked_add(frac))
        .ok_or_else(err)?;
    let scaled = match suffix {
        "" => Some(base),
        "n" => Some(base / NANO),
        "u" => Some(base / 1_000_000),
        "m" => Some(base / 1_000),
        "k" => base.checked_mul(1_000),
        "M" => base.checked_mul(1_000_000),
        "G" => base.checked_mul(1_000_000_000),
        "T" => base.checked_mul(1_000_000_000_000),
        "P" => base.checked_mul(1_000_000_000_000_000),
        "E" => base.checked_mul(1_000_000_000_000_000_000),
        "Ki" => base.checked_mul(1 << 10),
        "Mi" => base.checked_mul(1 << 20),
        "Gi" => base.checked_mul(1 << 30),
        "Ti" => base.checked_mul(1 << 40),
        "Pi" => base.checked_mul(1 << 50),
        "Ei" => base.checked_mul(1 << 60),
        exp if exp.starts_with(['e', 'E']) => {
            let e: u32 = exp[1..].parse().map_err(|_| err())?;
            10i128.checked_pow(e).and_then(|p| base.checked_mul(p))
        }
        _ => None,
    };
    scaled.map(|v| v * sign).ok_or_else(err)
}

/// Parses a [`Quantity`].
pub fn quantity_nanos(q: &Quantity) -> Result<i128, QuantityError> {
    parse_nanos(&q.0)
}

/// `ceil(value / divisor)`, as the kubelet computes `resourceFieldRef` values.
pub fn divide_ceil(value: i128, divisor: i128) -> Option<i128> {
    if divisor <= 0 {
        return None;
    }
    let q = value / divisor;
    Some(if value % divisor > 0 { q + 1 } else { q })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes() {
        let cases = [
            ("1", NANO),
            ("500m", NANO / 2),
            ("1.5", NANO + NANO / 2),
            ("128Mi", 128 * (1 << 20) * NANO),
            ("1G", 1_000_000_000 * NANO),
            ("1e3", 1000 * NANO),
            ("100n", 100),
            ("4Ki", 4096 * NANO),
            ("0", 0),
        ];
        for (text, want) in cases {
            assert_eq!(parse_nanos(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for text in ["", "abc", "1.2.3", "5Q", "m", "1e", "--1"] {
            assert!(parse_nanos(text).is_err(), "{text} should fail");
        }
    }

    #[test]
    fn ceil_division() {
        assert_eq!(divide_ceil(NANO / 2, NANO), Some(1));
        assert_eq!(divide_ceil(2 * NANO, NANO), Some(2));
        assert_eq!(divide_ceil(1, 0), None);
    }
}
