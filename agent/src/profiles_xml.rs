//! Reading Kodi's `profiles.xml`: a profile's stored lock-code hash, for logging it in from
//! the PIN pad with `Profiles.LoadProfile` (Kodi compares hash to hash).

use std::path::Path;

/// The `<lockcode>` of the profile named `name` (compared as Kodi does: ASCII
/// case-insensitively), if the file and the profile exist.
pub fn lock_code_hash(profiles_xml: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(profiles_xml).ok()?;
    find_lock_code(&text, name)
}

fn find_lock_code(text: &str, name: &str) -> Option<String> {
    text.split("<profile>").skip(1).find_map(|block| {
        let block = block.split("</profile>").next()?;
        let found = unescape(element(block, "name")?);
        found
            .eq_ignore_ascii_case(name)
            .then(|| element(block, "lockcode").map(str::to_owned))
            .flatten()
    })
}

fn element<'a>(block: &'a str, tag: &str) -> Option<&'a str> {
    let start = block.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = block[start..].find(&format!("</{tag}>"))? + start;
    Some(block[start..end].trim())
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<profiles>
    <lastloaded>0</lastloaded>
    <profile><id>0</id><name>Master user</name><lockmode>1</lockmode><lockcode>aaa</lockcode></profile>
    <profile>
        <id>1</id>
        <name>Kids &amp; Co</name>
        <directory pathversion="1">profiles/Kids/</directory>
        <lockmode>1</lockmode>
        <lockcode>81dc9bdb52d04dc20036dbd8313ed055</lockcode>
    </profile>
</profiles>"#;

    #[test]
    fn finds_a_profile_hash_by_name() {
        assert_eq!(
            find_lock_code(XML, "kids & co").as_deref(),
            Some("81dc9bdb52d04dc20036dbd8313ed055")
        );
        assert_eq!(find_lock_code(XML, "Master user").as_deref(), Some("aaa"));
        assert_eq!(find_lock_code(XML, "Nobody"), None);
        assert_eq!(find_lock_code("not xml", "Kids"), None);
    }
}
