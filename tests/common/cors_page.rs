//! Cross-origin fetches from a real browser: a page served by an [`Origin`] (its own
//! origin, `http://127.0.0.1:PORT`) runs a list of [`FetchCase`]s against the gateway (a
//! different origin) with `credentials: 'include'`, one after another, and writes what each
//! saw into the DOM; headless Chromium runs it once and [`run_page`] reads the results.
//!
//! ```ignore
//! let page = Origin::start("page");
//! let results = run_page(&page, &[
//!     FetchCase::get("orders", &gw.url("/orders/1")).read_header("x-request-id"),
//!     FetchCase::new("put", "PUT", &gw.url("/orders/2")).header("X-Custom", "1").body("{}"),
//! ]);
//! assert_eq!(results["orders"].status, Some(200));
//! assert!(results["put"].blocked());
//! ```
//!
//! A case the browser blocks (a CORS failure) rejects with `TypeError`: `ok` is false and
//! `error` holds the error's name and message. Add a case for a new kind of answer (a 429
//! from a rate limit) by adding one more [`FetchCase`] to a run.

use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;

use crate::common::browser::dump_dom;
use crate::common::origin::{Origin, Reply};

/// The path the page is served at.
pub const PAGE_PATH: &str = "/cors-page";

/// One `fetch` the page makes.
#[derive(Debug, Clone)]
pub struct FetchCase {
    pub name: String,
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// A response header the script tries to read (`null` unless it is exposed).
    pub read_header: Vec<String>,
}

impl FetchCase {
    pub fn new(name: &str, method: &str, url: &str) -> FetchCase {
        FetchCase {
            name: name.to_string(),
            method: method.to_string(),
            url: url.to_string(),
            headers: Vec::new(),
            body: None,
            read_header: Vec::new(),
        }
    }

    pub fn get(name: &str, url: &str) -> FetchCase {
        FetchCase::new(name, "GET", url)
    }

    pub fn header(mut self, name: &str, value: &str) -> FetchCase {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: &str) -> FetchCase {
        self.body = Some(body.to_string());
        self
    }

    /// Records what the script can read of response header `name`.
    pub fn read_header(mut self, name: &str) -> FetchCase {
        self.read_header.push(name.to_string());
        self
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "method": self.method,
            "url": self.url,
            "headers": self.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
            "body": self.body,
            "read": self.read_header,
        })
    }
}

/// What the page saw of one fetch.
#[derive(Debug, Clone, Deserialize)]
pub struct FetchResult {
    /// The fetch resolved (the browser let the script see the response).
    pub ok: bool,
    pub status: Option<u16>,
    pub body: Option<String>,
    /// The headers asked for by [`FetchCase::read_header`]: their value, or `None` when the
    /// browser hides them.
    #[serde(default)]
    pub headers: HashMap<String, Option<String>>,
    /// `TypeError: Failed to fetch` for a blocked request.
    pub error: Option<String>,
}

impl FetchResult {
    /// The browser refused the script the response (a CORS failure).
    pub fn blocked(&self) -> bool {
        !self.ok
            && self
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("TypeError"))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.as_deref())
    }
}

/// The page: runs the cases in order and writes `{name: result}` as JSON into
/// `<pre id="results">`, then `<p id="done">`.
fn page_html(cases: &[FetchCase]) -> String {
    let cases: Vec<serde_json::Value> = cases.iter().map(FetchCase::to_json).collect();
    // `</` cannot end the script early: JSON strings may hold `/` escaped.
    let cases = serde_json::to_string(&cases)
        .expect("cases serialize")
        .replace("</", "<\\/");
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>cors page</title></head>
<body>
<pre id="results">pending</pre>
<script>
const cases = {cases};
(async () => {{
  const out = {{}};
  for (const c of cases) {{
    const init = {{ method: c.method, headers: c.headers, credentials: 'include' }};
    if (c.body !== null) init.body = c.body;
    try {{
      const r = await fetch(c.url, init);
      const headers = {{}};
      for (const h of c.read) headers[h] = r.headers.get(h);
      out[c.name] = {{ ok: true, status: r.status, body: await r.text(), headers }};
    }} catch (e) {{
      out[c.name] = {{ ok: false, error: e.name + ': ' + e.message }};
    }}
  }}
  document.getElementById('results').textContent = JSON.stringify(out);
  const done = document.createElement('p');
  done.id = 'done';
  document.body.appendChild(done);
}})();
</script>
</body></html>
"#
    )
}

/// Serves the page for `cases` from `page` (at [`PAGE_PATH`]), loads it in headless
/// Chromium and returns each case's result by name. Panics with the DOM when the page did
/// not finish.
pub fn run_page(page: &Origin, cases: &[FetchCase]) -> HashMap<String, FetchResult> {
    page.set_route(
        PAGE_PATH,
        Reply::ok()
            .header("content-type", "text/html; charset=utf-8")
            .body(page_html(cases)),
    );
    let url = format!("http://{}{PAGE_PATH}", page.addr());
    let dom = dump_dom(&url);
    assert!(
        dom.contains("<p id=\"done\">"),
        "the page did not finish its fetches:\n{dom}"
    );
    let start = dom
        .find("<pre id=\"results\">")
        .map(|i| i + "<pre id=\"results\">".len())
        .unwrap_or_else(|| panic!("no results in the DOM:\n{dom}"));
    let end = start + dom[start..].find("</pre>").expect("results end");
    // Text in the serialized DOM escapes only `&`, `<`, `>` (and no-break spaces).
    let json = dom[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&");
    let results: HashMap<String, FetchResult> = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("results are not JSON ({e}):\n{json}"));
    for c in cases {
        assert!(
            results.contains_key(&c.name),
            "no result for case {}: {json}",
            c.name
        );
    }
    results
}
