//! Kubernetes resource quantities ("2Gi", "500m", "1e3") as numbers. The apiserver rewrites
//! quantities into canonical form ("1.5Gi" comes back as "1536Mi"), so comparing what we applied
//! with what is stored must compare values, not strings.

/// The value of a quantity in base units (bytes, cores), or None if `text` is not a quantity.
pub fn parse(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if number.is_empty() || number == "+" || number == "-" {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent if exponent.starts_with(['e', 'E']) => 10f64.powi(exponent[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * multiplier)
}

/// True when both strings are quantities of the same value.
pub fn same_value(a: &str, b: &str) -> bool {
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

/// Whole mebibytes in a byte quantity, rounded down.
pub fn mebibytes(text: &str) -> Option<u64> {
    parse(text).filter(|v| *v >= 0.0).map(|bytes| (bytes / (1024.0 * 1024.0)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_decimal_and_milli_suffixes() {
        assert_eq!(parse("2Gi"), Some(2.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse("500m"), Some(0.5));
        assert_eq!(parse("1k"), Some(1000.0));
        assert_eq!(parse("1e3"), Some(1000.0));
        assert_eq!(parse("12"), Some(12.0));
        assert_eq!(parse("Gi"), None);
        assert_eq!(parse("2Gb"), None);
    }

    #[test]
    fn canonical_forms_compare_equal() {
        assert!(same_value("1.5Gi", "1536Mi"));
        assert!(same_value("1000m", "1"));
        assert!(same_value("0.5", "500m"));
        assert!(!same_value("1Gi", "1G"));
        assert!(!same_value("web", "web"));
    }

    #[test]
    fn mebibytes_of_a_limit() {
        assert_eq!(mebibytes("2Gi"), Some(2048));
        assert_eq!(mebibytes("1500Mi"), Some(1500));
        assert_eq!(mebibytes("nope"), None);
    }
}
