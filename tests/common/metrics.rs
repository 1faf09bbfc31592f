//! Prometheus text, parsed by hand: what `/metrics` says, for assertions.

use std::collections::BTreeMap;

/// Parse Prometheus text exposition lines into (name, labels, value).
pub fn parse_metrics(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, labels, rest) = if let Some(brace) = line.find('{') {
            let Some(end) = line.rfind('}') else { continue };
            (
                &line[..brace],
                parse_labels(&line[brace + 1..end]),
                line[end + 1..].trim(),
            )
        } else {
            let mut it = line.splitn(2, char::is_whitespace);
            let n = it.next().unwrap_or("");
            (n, BTreeMap::new(), it.next().unwrap_or("").trim())
        };
        let val_str = rest.split_whitespace().next().unwrap_or("");
        let val = match val_str {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => match v.parse::<f64>() {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        out.push((name.to_string(), labels, val));
    }
    out
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(',') | Some(' ')) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        if chars.next() != Some('"') {
            break;
        }
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => val.push('\n'),
                    Some(o) => val.push(o),
                    None => break,
                },
                '"' => break,
                o => val.push(o),
            }
        }
        m.insert(key.trim().to_string(), val);
    }
    m
}

/// Sum of all samples of `name` whose labels include all of `labels`; `None` if no sample matched.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for (n, l, v) in parse_metrics(text) {
        if n != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, want)| l.get(*k).map(|x| x == want).unwrap_or(false))
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}
