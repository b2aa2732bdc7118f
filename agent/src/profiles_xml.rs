//! Reading Kodi's `profiles.xml`: a profile's stored lock-code hash, for logging it in from
//! the PIN pad with `Profiles.LoadProfile` (Kodi compares hash to hash).

use std::path::Path;

use kodi_tickets_protocol::same_profile;

/// The `<lockcode>` of the profile named `name` (compared as Kodi does: ASCII
/// case-insensitively), if the file and the profile exist.
pub fn lock_code_hash(profiles_xml: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(profiles_xml).ok()?;
    find_lock_code(&text, name)
}

fn find_lock_code(text: &str, name: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(text).ok()?;
    let child = |node: roxmltree::Node<'_, '_>, tag: &str| {
        node.children()
            .find(|c| c.has_tag_name(tag))
            .map(|c| c.text().unwrap_or_default().trim().to_owned())
    };
    doc.root_element()
        .children()
        .filter(|node| node.has_tag_name("profile"))
        .find(|profile| child(*profile, "name").is_some_and(|found| same_profile(&found, name)))
        .and_then(|profile| child(profile, "lockcode"))
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

    #[test]
    fn reads_the_file_kodi_20_1_writes() {
        let xml = include_str!("testdata/profiles-kodi-20.1.xml");
        assert_eq!(
            find_lock_code(xml, "KIDS").as_deref(),
            Some("88cf91a1aef212f3c2cd12406983427d")
        );
        assert_eq!(find_lock_code(xml, "Tickets").as_deref(), Some("-"));
    }

    #[test]
    fn comments_attributes_and_cdata_do_not_confuse_it() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes" ?>
<profiles>
    <!-- <profile><name>Kids</name><lockcode>fake</lockcode></profile> -->
    <profile>
        <id>1</id>
        <name><![CDATA[Kids]]></name>
        <lockcode encrypted="md5">81dc9bdb52d04dc20036dbd8313ed055</lockcode>
    </profile>
</profiles>"#;
        assert_eq!(
            find_lock_code(xml, "kids").as_deref(),
            Some("81dc9bdb52d04dc20036dbd8313ed055")
        );
    }

    #[test]
    fn names_fold_ascii_letters_only_as_kodi_does() {
        let xml =
            "<profiles><profile><name>Ärger</name><lockcode>x</lockcode></profile></profiles>";
        assert_eq!(find_lock_code(xml, "ärger"), None);
        assert_eq!(find_lock_code(xml, "Ärger").as_deref(), Some("x"));
    }
}
