//! Fully-qualified CDI device names, `vendor.com/class=name`, and the
//! `kind` (`vendor.com/class`) of a spec file. The character rules are the
//! CDI specification's; checking them here means a typo in a pod spec is
//! reported as a malformed name, not as an unknown device.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QualifiedName {
    pub vendor: String,
    pub class: String,
    pub name: String,
}

impl QualifiedName {
    /// `vendor/class`, the kind of the spec file that must define it.
    pub fn kind(&self) -> String {
        format!("{}/{}", self.vendor, self.class)
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}={}", self.vendor, self.class, self.name)
    }
}

/// Parses `vendor.com/class=name`; the error says which part is wrong.
pub fn parse_qualified(text: &str) -> Result<QualifiedName, String> {
    let (kind, name) = text.split_once('=').ok_or("missing \"=\" between class and device name")?;
    let (vendor, class) = parse_kind(kind)?;
    check_device_name(name)?;
    Ok(QualifiedName { vendor, class, name: name.to_string() })
}

/// Parses a spec's `kind`, `vendor.com/class`.
pub fn parse_kind(kind: &str) -> Result<(String, String), String> {
    let (vendor, class) = kind.split_once('/').ok_or_else(|| format!("kind {kind:?} has no \"/\" between vendor and class"))?;
    check_vendor(vendor)?;
    check_class(class)?;
    Ok((vendor.to_string(), class.to_string()))
}

/// Letters, digits, `-` and `.`; starts with a letter, ends with a letter
/// or digit (a domain name).
fn check_vendor(vendor: &str) -> Result<(), String> {
    check_part("vendor", vendor, |c| c.is_ascii_alphanumeric() || c == '-' || c == '.', true)
}

/// Letters, digits, `-` and `_`; starts with a letter, ends with a letter
/// or digit.
fn check_class(class: &str) -> Result<(), String> {
    check_part("class", class, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_', true)
}

/// Letters, digits, `-`, `_`, `.` and `:`; starts and ends with a letter
/// or digit (so `0` and `gpu:1` are names, `-x` is not).
pub fn check_device_name(name: &str) -> Result<(), String> {
    check_part("device name", name, |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'), false)
}

fn check_part(what: &str, text: &str, allowed: impl Fn(char) -> bool, letter_first: bool) -> Result<(), String> {
    let (Some(first), Some(last)) = (text.chars().next(), text.chars().last()) else {
        return Err(format!("the {what} is empty"));
    };
    if let Some(bad) = text.chars().find(|&c| !allowed(c)) {
        return Err(format!("the {what} {text:?} contains {bad:?}"));
    }
    let first_ok = if letter_first { first.is_ascii_alphabetic() } else { first.is_ascii_alphanumeric() };
    if !first_ok {
        let must = if letter_first { "a letter" } else { "a letter or digit" };
        return Err(format!("the {what} {text:?} must start with {must}"));
    }
    if !last.is_ascii_alphanumeric() {
        return Err(format!("the {what} {text:?} must end with a letter or digit"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_names_parse_into_their_parts() {
        let q = parse_qualified("vendor.example/gpu=0").unwrap();
        assert_eq!((q.vendor.as_str(), q.class.as_str(), q.name.as_str()), ("vendor.example", "gpu", "0"));
        assert_eq!(q.kind(), "vendor.example/gpu");
        assert_eq!(q.to_string(), "vendor.example/gpu=0");
        assert!(parse_qualified("nvidia.com/gpu=GPU-1a2b:mig-1.0").is_ok());
        assert!(parse_qualified("a-b.c/net_dev=x_y").is_ok());
    }

    #[test]
    fn malformed_names_say_which_part_is_wrong() {
        for (text, needle) in [
            ("gpu0", "missing \"=\""),
            ("vendor.example=0", "no \"/\""),
            ("/gpu=0", "vendor is empty"),
            ("vendor.example/=0", "class is empty"),
            ("vendor.example/gpu=", "device name is empty"),
            ("1vendor/gpu=0", "must start with a letter"),
            ("vendor-/gpu=0", "must end with"),
            ("vendor.example/g.pu=0", "contains '.'"),
            ("vendor.example/gpu=-0", "must start with a letter or digit"),
            ("vendor.example/gpu=0 1", "contains ' '"),
            ("vendor.example/gpu=a=b", "contains '='"),
        ] {
            let e = parse_qualified(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
