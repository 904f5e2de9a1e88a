//! How snigate compares a request's path with a route's `paths`, as IIS
//! would see it: percent-escapes decoded, empty and `.` segments dropped,
//! `..` taking back the segment before it (never above the root), and
//! ASCII case ignored. A prefix matches on segment boundaries: `/owa`
//! matches `/owa`, `/owa/` and `/OWA/x`, not `/owax`. Routing on the
//! decoded form means `/%6fwa` and `/x/../owa` go where `/owa` goes, as the
//! backend will read them.

/// The segments of `path` (without its query), lower case.
pub fn path_segments(path: &str) -> Vec<String> {
    let decoded = percent_decoded(path.as_bytes());
    let mut segments: Vec<String> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s.to_ascii_lowercase()),
        }
    }
    segments
}

/// Whether a path of `segments` lies under `prefix` (segments too; an
/// empty prefix is every path).
pub fn under(segments: &[String], prefix: &[String]) -> bool {
    segments.len() >= prefix.len() && prefix.iter().zip(segments).all(|(p, s)| p == s)
}

/// `%XX` escapes decoded (an invalid one is kept as written), as text;
/// bytes that are not UTF-8 become U+FFFD.
fn percent_decoded(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (raw[i], raw.get(i + 1), raw.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let v = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(v as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Vec<String> {
        path_segments(p)
    }

    #[test]
    fn segments_are_decoded_and_resolved() {
        assert_eq!(segs("/OWA//x/./y/../"), ["owa", "x"]);
        assert_eq!(segs("/%6Fwa/"), ["owa"]);
        assert_eq!(segs("/a/../../owa"), ["owa"]);
        assert_eq!(segs("/"), Vec::<String>::new());
        assert_eq!(segs(""), Vec::<String>::new());
        assert_eq!(segs("/a%2Fb"), ["a", "b"]);
        assert_eq!(segs("/100%"), ["100%"]);
        assert_eq!(segs("/%zz"), ["%zz"]);
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        let owa = segs("/owa");
        assert!(under(&segs("/owa"), &owa));
        assert!(under(&segs("/owa/"), &owa));
        assert!(under(&segs("/OWA/x"), &owa));
        assert!(!under(&segs("/owax"), &owa));
        assert!(!under(&segs("/"), &owa));
        assert!(under(&segs("/anything"), &[]));
    }
}
