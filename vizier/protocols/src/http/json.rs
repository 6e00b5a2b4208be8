//! Headers as the JSON object string Pixie stores in `req_headers`/`resp_headers`.

use std::fmt::Write;

/// `{"Name":"value",...}` like Pixie's `ToJSONString` of its header multimap: names sorted
/// case-insensitively (repeated names keep their wire order), and a repeated name appears as a
/// repeated key rather than being merged, so no value is lost.
pub fn headers_json(headers: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = headers.iter().collect();
    // Stable, so repeated names keep their wire order.
    sorted.sort_by_cached_key(|(name, _)| name.to_ascii_lowercase());
    let mut out = String::with_capacity(
        2 + headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 6)
            .sum::<usize>(),
    );
    out.push('{');
    for (i, (name, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_string(&mut out, name);
        out.push(':');
        push_string(&mut out, value);
    }
    out.push('}');
    out
}

fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn headers_become_a_sorted_json_object_with_escaped_strings() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "{}"),
            (&[("Host", "x")], r#"{"Host":"x"}"#),
            (
                &[("b", "2"), ("A", "1"), ("c", "3")],
                r#"{"A":"1","b":"2","c":"3"}"#,
            ),
            (
                &[
                    ("Set-Cookie", "a=1"),
                    ("Accept", "*/*"),
                    ("set-cookie", "b=2"),
                ],
                r#"{"Accept":"*/*","Set-Cookie":"a=1","set-cookie":"b=2"}"#,
            ),
            (&[("X", "say \"hi\"\\")], r#"{"X":"say \"hi\"\\"}"#),
            (
                &[("X", "a\tb\u{1}\u{7f}é")],
                "{\"X\":\"a\\tb\\u0001\\u007fé\"}",
            ),
        ];
        for (headers, want) in cases {
            assert_eq!(headers_json(&h(headers)), *want);
        }
    }
}
