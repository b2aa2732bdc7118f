//! Rules for what people type: names, ticket lengths, PINs.

pub const NAME_MAX_CHARS: usize = 50;
pub const LENGTH_MIN: i64 = 1;
pub const LENGTH_MAX: i64 = 1440;

/// A profile, device or admin user name: trimmed, 1 to 50 characters, no control characters,
/// and none of `:` `/` `\` (the Kodi script takes `profile:PIN`, and Kodi makes a folder of a
/// profile's name).
pub fn name(raw: &str, what: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(format!("the {what} name is required"));
    }
    if name.chars().count() > NAME_MAX_CHARS {
        return Err(format!(
            "the {what} name may have at most {NAME_MAX_CHARS} characters"
        ));
    }
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, ':' | '/' | '\\'))
    {
        return Err(format!(
            "the {what} name may not contain control characters, ':', '/' or '\\'"
        ));
    }
    Ok(name.to_owned())
}

/// A ticket length in whole minutes, 1 to 1440.
pub fn length(raw: &str) -> Result<i64, String> {
    let message = || {
        format!("the length must be a whole number of minutes from {LENGTH_MIN} to {LENGTH_MAX}")
    };
    let minutes: i64 = raw.trim().parse().map_err(|_| message())?;
    if (LENGTH_MIN..=LENGTH_MAX).contains(&minutes) {
        Ok(minutes)
    } else {
        Err(message())
    }
}

/// A PIN: exactly four ASCII digits.
pub fn is_lock_code(s: &str) -> bool {
    s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(name("  Room 12 ", "profile").unwrap(), "Room 12");
        assert_eq!(name("Lüttje Kinner", "profile").unwrap(), "Lüttje Kinner");
        assert!(name("", "profile").is_err());
        assert!(name("   ", "profile").is_err());
        assert!(name("a\nb", "profile").is_err());
        assert!(name("a:b", "profile").is_err());
        assert!(name("../x", "profile").is_err());
        assert!(name(&"x".repeat(51), "profile").is_err());
        assert!(name(&"é".repeat(50), "profile").is_ok());
    }

    #[test]
    fn lengths() {
        assert_eq!(length("30"), Ok(30));
        assert_eq!(length(" 1440 "), Ok(1440));
        for bad in ["0", "1441", "-5", "abc", "", "1.5", "99999999999999999999"] {
            assert!(length(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lock_codes() {
        assert!(is_lock_code("0000"));
        assert!(is_lock_code("1234"));
        for bad in ["123", "12345", "12a4", "１２３４", " 123"] {
            assert!(!is_lock_code(bad), "{bad}");
        }
    }
}
