//! How much parse tree a routes.toml would build, counted from its text before the TOML
//! parser runs.
//!
//! The parsed document, not the text, is what a load's memory peak is made of, and its
//! size per byte of text depends on the content: 16 MiB of `a = [{a=0},{a=0},...]` took
//! 4.5 GB to parse (QA issue 13, F3), 16 MiB of plain routes about 1 GB. So a file is also
//! bounded by what it holds: this file counts the structure (keys, values, tables, array
//! elements) with a lexical scan that skips strings and comments, weighted by what each
//! costs the parser, and `bounds.rs` refuses a file over the budget its `max_config_bytes`
//! gives it. It parses nothing and decides nothing else.

/// The parse-tree cost of the file, in units: `[` and `{` (a table or an array: a header,
/// an inline table, an array value) count [`OPEN_UNITS`], `=` (a key with its value)
/// [`KEY_UNITS`], `.` (a dotted key's table) [`DOT_UNITS`], `,` (an array element or
/// another inline key) one. Strings and comments count nothing; so bytes that only make the
/// file longer (long strings, comments, blank lines) never add to the count.
///
/// The weights come from the parser's measured cost (docs/performance.md, "Config
/// compilation"): a table or an array takes about three times what a bare array element
/// does, a key-value about twice. The scan over-counts rather than under-counts: a `.` in
/// a float, or a bracket in invalid text, counts too.
pub fn parse_units(text: &str) -> u64 {
    let b = text.as_bytes();
    let mut units: u64 = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => i = end_of_line(b, i),
            b'"' | b'\'' => i = end_of_string(b, i),
            b'[' | b'{' => {
                units += OPEN_UNITS;
                i += 1;
            }
            b'=' => {
                units += KEY_UNITS;
                i += 1;
            }
            b'.' => {
                units += DOT_UNITS;
                i += 1;
            }
            b',' => {
                units += 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    units
}

/// What a table or an array (`[` or `{`) counts, against 1 for an array element.
pub const OPEN_UNITS: u64 = 3;
/// What a key with its value (`=`) counts.
pub const KEY_UNITS: u64 = 2;
/// What a `.` counts: each part of a dotted key (`a.b.c = 1`, `[a.b.c]`) may open a table
/// of its own, the most expensive thing per byte found so far (a black-box re-check: 10 MB
/// of `aNNNNNNN.b.c.d.e.f.g.h = 1` lines, about 2.6 million implicit tables, peaked at
/// 3.75 GB, ~1.4 KB a table, while a dot counted 1). Five units keep such a file's peak
/// near the other shapes' per unit. A float's `.` over-counts, harmlessly.
pub const DOT_UNITS: u64 = 5;

/// The index of the newline ending the line that `i` is on (or the end of the text).
fn end_of_line(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| i + p)
}

/// The index just past the string that starts at `i` (a quote). Basic strings (`"`) know
/// `\` escapes, literal ones (`'`) do not; a one-line string also ends at a newline (it
/// is invalid then, and the parser reports it). A multi-line string (`"""`, `'''`) ends
/// at the first closing triple quote plus the up to two quotes that may follow it (they
/// belong to the string: `"""a"""""` is `a""`).
fn end_of_string(b: &[u8], i: usize) -> usize {
    let q = b[i];
    let escapes = q == b'"';
    let triple = b.len() >= i + 3 && b[i + 1] == q && b[i + 2] == q;
    let mut j = if triple { i + 3 } else { i + 1 };
    while j < b.len() {
        let c = b[j];
        if escapes && c == b'\\' {
            j += 2;
            continue;
        }
        if !triple && c == b'\n' {
            return j;
        }
        if c == q {
            if !triple {
                return j + 1;
            }
            if b.len() >= j + 3 && b[j + 1] == q && b[j + 2] == q {
                let mut end = j + 3;
                let mut extra = 0;
                while extra < 2 && end < b.len() && b[end] == q {
                    end += 1;
                    extra += 1;
                }
                return end;
            }
        }
        j += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structure_is_counted_and_strings_and_comments_are_not() {
        assert_eq!(parse_units(""), 0);
        assert_eq!(parse_units("a = 1\n"), KEY_UNITS);
        assert_eq!(parse_units("[t]\n"), OPEN_UNITS);
        assert_eq!(parse_units("[[routes]]\n"), 2 * OPEN_UNITS);
        assert_eq!(parse_units("a = [0,0,0]"), KEY_UNITS + OPEN_UNITS + 2);
        assert_eq!(
            parse_units("a = [{a=0},{a=0}]"),
            KEY_UNITS + OPEN_UNITS + 2 * (OPEN_UNITS + KEY_UNITS) + 1
        );
        assert_eq!(parse_units("a.b.c = 1"), KEY_UNITS + 2 * DOT_UNITS);
        assert_eq!(parse_units("[a.b]\n"), OPEN_UNITS + DOT_UNITS);
        // Nothing inside strings or comments counts.
        assert_eq!(parse_units("a = \"[{=,.}]\" # [{=,.}]\n"), KEY_UNITS);
        assert_eq!(parse_units("a = '[{=,.}]'"), KEY_UNITS);
        assert_eq!(parse_units("a = \"\\\"[{=,\""), KEY_UNITS);
        assert_eq!(parse_units("a = \"\"\"\n[{=,\n\"\"\""), KEY_UNITS);
        assert_eq!(parse_units("a = '''\n[{=,\\'''"), KEY_UNITS);
        // Quotes right after a closing triple quote belong to the string.
        assert_eq!(parse_units("a = \"\"\"x\"\"\"\"\"\nb = 1"), 2 * KEY_UNITS);
        // A one-line string that is not closed ends at the line's end.
        assert_eq!(parse_units("a = \"open\nb = 1"), 2 * KEY_UNITS);
        // Comments end at the line's end.
        assert_eq!(parse_units("# a = 1\nb = 1"), KEY_UNITS);
    }

    #[test]
    fn the_bomb_shapes_count_in_proportion_to_their_elements() {
        let n = 1000;
        let arr = format!("a = [{}]", "0,".repeat(n));
        assert!(parse_units(&arr) >= n as u64);
        let tables = format!("a = [{}]", "{a=0},".repeat(n));
        assert!(parse_units(&tables) >= 6 * n as u64);
        let headers: String = (0..n).map(|i| format!("[t{i}]\n")).collect();
        assert_eq!(parse_units(&headers), OPEN_UNITS * n as u64);
    }
}
