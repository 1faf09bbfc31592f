//! Reads the frame layout of one direction of an HTTP/2 connection as its bytes pass by.
//!
//! [`FrameScanner`] is fed the bytes in the order they cross the socket, in pieces of any
//! size, and reports each frame's 9-byte header (RFC 9113 §4.1) and, for `GOAWAY`, the
//! error code and the start of its debug data. It never copies a payload (except those
//! few `GOAWAY` bytes) and never judges a frame: what a frame means for the connection is
//! [`super::h2_guard`]'s business. It also says whether the bytes so far end exactly at a
//! frame boundary, the only place another frame may be put into the stream.

/// What every HTTP/2 client sends before its first frame (RFC 9113 §3.4).
pub const PREFACE_LEN: usize = 24;

/// The size of a frame header.
const HEAD_LEN: usize = 9;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;

/// `END_STREAM` on `DATA` and `HEADERS`.
pub const END_STREAM: u8 = 0x1;

/// `NO_ERROR`, the code of a graceful `GOAWAY`.
pub const NO_ERROR: u32 = 0x0;
/// `ENHANCE_YOUR_CALM` (RFC 9113 §7): the peer is generating excessive load.
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// How much of a `GOAWAY` payload is kept: the last stream id, the error code and the
/// start of the debug data (h2 writes a short reason such as `too_many_resets` there).
const GOAWAY_KEPT: usize = 8 + 32;

/// One frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// Payload length.
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl FrameHead {
    fn parse(b: &[u8; HEAD_LEN]) -> FrameHead {
        FrameHead {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            // The reserved top bit is not part of the id.
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }
}

/// What the scanner saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen<'a> {
    /// A frame header (its payload follows).
    Head(FrameHead),
    /// The end of a `GOAWAY` frame: its error code and the start of its debug data.
    GoAway { code: u32, debug: &'a [u8] },
}

/// Walks the frames of one direction of a connection (see the module docs).
#[derive(Debug)]
pub struct FrameScanner {
    /// Bytes to pass before the next frame header: the rest of a payload (or the preface).
    skip: usize,
    head: [u8; HEAD_LEN],
    /// Bytes of `head` filled so far.
    have: usize,
    /// The current frame is a `GOAWAY` whose first bytes are kept in `kept`.
    in_goaway: bool,
    kept: [u8; GOAWAY_KEPT],
    kept_len: usize,
}

impl FrameScanner {
    /// For the server's side: frames from the first byte.
    pub fn frames() -> FrameScanner {
        FrameScanner::skipping(0)
    }

    /// For the client's side, which starts with the connection preface.
    pub fn after_preface() -> FrameScanner {
        FrameScanner::skipping(PREFACE_LEN)
    }

    fn skipping(skip: usize) -> FrameScanner {
        FrameScanner {
            skip,
            head: [0; HEAD_LEN],
            have: 0,
            in_goaway: false,
            kept: [0; GOAWAY_KEPT],
            kept_len: 0,
        }
    }

    /// Whether the bytes fed so far end exactly where a frame ends.
    pub fn at_boundary(&self) -> bool {
        self.skip == 0 && self.have == 0 && !self.in_goaway
    }

    /// Scans the next `bytes` of the direction, calling `seen` for what they hold.
    pub fn feed(&mut self, bytes: &[u8], mut seen: impl FnMut(Seen<'_>)) {
        let mut at = 0;
        while at < bytes.len() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len() - at);
                if self.in_goaway {
                    let keep = n.min(GOAWAY_KEPT - self.kept_len);
                    self.kept[self.kept_len..self.kept_len + keep]
                        .copy_from_slice(&bytes[at..at + keep]);
                    self.kept_len += keep;
                }
                self.skip -= n;
                at += n;
                if self.skip == 0 {
                    self.end_goaway(&mut seen);
                }
                continue;
            }
            let n = (HEAD_LEN - self.have).min(bytes.len() - at);
            self.head[self.have..self.have + n].copy_from_slice(&bytes[at..at + n]);
            self.have += n;
            at += n;
            if self.have < HEAD_LEN {
                break;
            }
            self.have = 0;
            let head = FrameHead::parse(&self.head);
            // A frame payload is at most 2^24 - 1 bytes, so this fits any usize we run on.
            self.skip = head.len as usize;
            self.in_goaway = head.kind == GOAWAY;
            self.kept_len = 0;
            seen(Seen::Head(head));
            if self.skip == 0 {
                self.end_goaway(&mut seen);
            }
        }
    }

    /// Reports a `GOAWAY` whose payload just ended.
    fn end_goaway(&mut self, seen: &mut impl FnMut(Seen<'_>)) {
        if !self.in_goaway {
            return;
        }
        self.in_goaway = false;
        let kept = &self.kept[..self.kept_len];
        // A shorter payload is a malformed GOAWAY; its code reads as NO_ERROR.
        let code = kept
            .get(4..8)
            .map_or(NO_ERROR, |c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        seen(Seen::GoAway {
            code,
            debug: kept.get(8..).unwrap_or(&[]),
        });
    }
}

/// The bytes of a `GOAWAY` frame with `code`, naming `last_stream` as the last stream
/// that was or may be processed, and `debug` as its debug data.
pub fn goaway(last_stream: u32, code: u32, debug: &[u8]) -> Vec<u8> {
    let len = 8 + debug.len();
    let mut f = Vec::with_capacity(HEAD_LEN + len);
    // Debug data here is a short constant, far below the 16 KiB minimum frame size.
    f.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    f.push(GOAWAY);
    f.push(0);
    f.extend_from_slice(&0u32.to_be_bytes());
    f.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(debug);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn scan_in_pieces(s: &mut FrameScanner, bytes: &[u8], piece: usize) -> Vec<String> {
        let mut out = Vec::new();
        for chunk in bytes.chunks(piece) {
            s.feed(chunk, |seen| {
                out.push(match seen {
                    Seen::Head(h) => format!("{}:{}:{}:{}", h.kind, h.flags, h.stream, h.len),
                    Seen::GoAway { code, debug } => {
                        format!("goaway:{code}:{}", String::from_utf8_lossy(debug))
                    }
                })
            });
        }
        out
    }

    #[test]
    fn frames_are_found_however_the_bytes_are_split() {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(4, 0, 0, &[0; 6]));
        bytes.extend(frame(8, 0, 0, &[0, 0, 1, 0]));
        bytes.extend(frame(1, 5, 1, b"hdrs"));
        bytes.extend(frame(0, 0, 0x8000_0003, b""));
        bytes.extend(goaway(3, ENHANCE_YOUR_CALM, b"too_many_resets"));
        let want = vec![
            "4:0:0:6",
            "8:0:0:4",
            "1:5:1:4",
            "0:0:3:0",
            "7:0:0:23",
            "goaway:11:too_many_resets",
        ];
        for piece in [1, 2, 5, 9, 10, 64, bytes.len()] {
            let mut s = FrameScanner::after_preface();
            assert_eq!(
                scan_in_pieces(&mut s, &bytes, piece),
                want,
                "pieces of {piece}"
            );
            assert!(s.at_boundary());
        }
    }

    #[test]
    fn a_boundary_is_only_between_frames() {
        let f = frame(0, 1, 1, b"hello");
        let mut s = FrameScanner::frames();
        assert!(s.at_boundary());
        s.feed(&f[..4], |_| {});
        assert!(!s.at_boundary(), "inside a header");
        s.feed(&f[4..11], |_| {});
        assert!(!s.at_boundary(), "inside a payload");
        s.feed(&f[11..], |_| {});
        assert!(s.at_boundary());
    }

    #[test]
    fn a_short_goaway_reads_as_no_error() {
        let mut s = FrameScanner::frames();
        let out = scan_in_pieces(&mut s, &frame(7, 0, 0, &[0, 0]), 3);
        assert_eq!(out, vec!["7:0:0:2", "goaway:0:"]);
    }
}
