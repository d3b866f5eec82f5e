//! The dashboard's HTML: one layout, tables, escaping. Every value from outside (a username,
//! a Contact, a log message) goes through [`esc`].

use super::auth::Session;

/// `s` escaped for HTML text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` percent-encoded for a query string value (RFC 3986 §2.1: all but the unreserved).
pub fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b));
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:0;color:#222}\
header{background:#1d3557;color:#fff;padding:.6em 1em}header a{color:#fff;margin-right:1em}\
main{padding:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}\
th{background:#eee}form.inline{display:inline}.error{color:#b00}pre{background:#f6f6f6;padding:1em}";

/// A page for a logged-in session: the menu, `title`, `body` (already HTML).
pub fn page(title: &str, session: &Session, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t} - Farside</title><style>{STYLE}</style></head>\
         <body><header><strong>Farside</strong> &nbsp; <a href=\"/\">Overview</a><a href=\"/allocations\">Allocations</a>\
         <a href=\"/registrations\">Registrations</a><a href=\"/sources\">Sources</a><a href=\"/calls\">Calls</a><a href=\"/log\">Log</a><a href=\"/users\">Users and secrets</a>\
         <a href=\"/config\">Configuration</a><form class=\"inline\" method=\"post\" action=\"/logout\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">Log out</button></form></header>\
         <main><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title),
        csrf = session.csrf,
    )
}

/// The login page, with an error if the last try failed.
pub fn login(error: Option<&str>) -> String {
    let error = error.map_or_else(String::new, |e| {
        format!("<p class=\"error\" id=\"error\">{}</p>", esc(e))
    });
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Log in - Farside</title><style>{STYLE}</style></head>\
         <body><header><strong>Farside</strong></header><main><h1>Log in</h1>{error}\
         <form method=\"post\" action=\"/login\"><label>Password <input id=\"password\" name=\"password\" type=\"password\" autofocus required></label> \
         <button id=\"login\" type=\"submit\">Log in</button></form>\
         <p>Set the password with <code>farside admin passwd</code>; until then the first-run password is in \
         <code>dashboard.password</code> beside the store.</p></main></body></html>"
    )
}

/// A table with `id`, `headers` and rows of cells (already HTML).
pub fn table(id: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let headers: Vec<String> = headers.iter().map(|h| esc(h)).collect();
    table_raw(id, &headers, rows)
}

/// As [`table`], with headers already HTML (links).
pub fn table_raw(id: &str, headers: &[String], rows: &[Vec<String>]) -> String {
    let mut s = format!("<table id=\"{}\"><thead><tr>", esc(id));
    for h in headers {
        s.push_str(&format!("<th>{h}</th>"));
    }
    s.push_str("</tr></thead><tbody>");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            s.push_str(&format!("<td>{c}</td>"));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

#[cfg(test)]
mod tests {
    use super::{esc, query_value};

    #[test]
    fn what_comes_from_outside_is_escaped() {
        assert_eq!(
            esc("<sip:a@b>;x=\"1\"&'"),
            "&lt;sip:a@b&gt;;x=&quot;1&quot;&amp;&#39;"
        );
        assert_eq!(
            query_value("<sip:a@b:5060;ob>&x"),
            "%3Csip%3Aa%40b%3A5060%3Bob%3E%26x"
        );
    }
}
