//! Finding the end of a chunked body (RFC 9112 section 7.1) in a byte stream
//! that is passed on unchanged. The fast path forwards an upstream's chunked
//! response verbatim; it only has to know where the body stops, so that the
//! connection can carry the next response. Pure: bytes in, counts out.

/// Where the reader is in the chunked grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a chunk-size line's hex digits (`digits` so far).
    Size {
        value: u64,
        digits: u8,
    },
    /// In a chunk extension, up to the line end.
    Ext {
        value: u64,
    },
    /// After a CR that ends a size line.
    SizeLf {
        value: u64,
    },
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// After chunk data: CR then LF.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// After the CR of the final empty line.
    FinalLf,
    Done,
}

/// A malformed chunked body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub struct ChunkError(&'static str);

/// Follows one chunked body.
#[derive(Debug, Clone)]
pub struct Chunked {
    state: State,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked { state: State::Size { value: 0, digits: 0 } }
    }
}

impl Chunked {
    /// True once the last chunk and the trailer section have been seen.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads `input`, returning how many of its bytes belong to the body.
    /// That is all of them until the body ends; bytes after the end are not
    /// consumed (for a response they mean the upstream misbehaved).
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            if let State::Data(left) = self.state {
                let take = left.min((input.len() - i) as u64);
                i += take as usize;
                self.state = if take == left { State::DataCr } else { State::Data(left - take) };
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = match self.state {
                State::Size { value, digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits >= 15 {
                            return Err(ChunkError("chunk size too large"));
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        State::Size { value: value * 16 + d, digits: digits + 1 }
                    }
                    _ if digits == 0 => return Err(ChunkError("chunk size without digits")),
                    b';' | b' ' | b'\t' => State::Ext { value },
                    b'\r' => State::SizeLf { value },
                    b'\n' => after_size(value),
                    _ => return Err(ChunkError("invalid byte in chunk size")),
                },
                State::Ext { value } => match b {
                    b'\r' => State::SizeLf { value },
                    b'\n' => after_size(value),
                    _ => State::Ext { value },
                },
                State::SizeLf { value } => match b {
                    b'\n' => after_size(value),
                    _ => return Err(ChunkError("CR without LF after chunk size")),
                },
                State::DataCr => match b {
                    b'\r' => State::DataLf,
                    b'\n' => State::Size { value: 0, digits: 0 },
                    _ => return Err(ChunkError("chunk data longer than its size")),
                },
                State::DataLf => match b {
                    b'\n' => State::Size { value: 0, digits: 0 },
                    _ => return Err(ChunkError("CR without LF after chunk data")),
                },
                State::TrailerStart => match b {
                    b'\r' => State::FinalLf,
                    b'\n' => State::Done,
                    _ => State::TrailerLine,
                },
                State::TrailerLine => match b {
                    b'\n' => State::TrailerStart,
                    _ => State::TrailerLine,
                },
                State::FinalLf => match b {
                    b'\n' => State::Done,
                    _ => return Err(ChunkError("CR without LF at the end of the trailers")),
                },
                State::Data(_) | State::Done => unreachable!("handled above"),
            };
        }
        Ok(i)
    }
}

fn after_size(value: u64) -> State {
    if value == 0 { State::TrailerStart } else { State::Data(value) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` in pieces of `step` bytes; returns (consumed, done).
    fn run(body: &[u8], step: usize) -> Result<(usize, bool), ChunkError> {
        let mut c = Chunked::default();
        let mut used = 0;
        for piece in body.chunks(step) {
            let n = c.feed(piece)?;
            used += n;
            if n < piece.len() {
                break;
            }
        }
        Ok((used, c.done()))
    }

    #[test]
    fn finds_the_end_whatever_the_pieces() {
        let body = b"5\r\nhello\r\n1a;name=v\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
        for step in 1..=body.len() {
            assert_eq!(run(body, step), Ok((body.len(), true)), "step {step}");
        }
    }

    #[test]
    fn trailers_and_bare_lf_lines() {
        let body = b"3\nabc\r\n0\r\nx-checksum: 1\r\nx-more: 2\r\n\r\n";
        assert_eq!(run(body, 7), Ok((body.len(), true)));
        let body = b"0\n\n";
        assert_eq!(run(body, 1), Ok((body.len(), true)));
    }

    #[test]
    fn stops_at_the_end_of_the_body() {
        let body = b"2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n";
        assert_eq!(run(body, body.len()), Ok((12, true)));
    }

    #[test]
    fn incomplete_is_not_done() {
        for body in [&b"5\r\nhel"[..], b"5\r\nhello\r\n", b"0\r\n", b"0\r\nx: 1\r\n"] {
            assert_eq!(run(body, 2), Ok((body.len(), false)), "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for body in
            [&b"\r\n"[..], b"g\r\n", b"5\rx", b"2\r\nabc\r\n", b"2\r\nab\rx", b"0\r\n\rx", b"10000000000000000\r\n"]
        {
            assert!(run(body, 1).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// A well-formed chunked body from arbitrary chunks and trailers.
        fn encode(chunks: &[Vec<u8>], trailers: &[(String, String)]) -> Vec<u8> {
            let mut out = Vec::new();
            for c in chunks.iter().filter(|c| !c.is_empty()) {
                out.extend(format!("{:x};e=1\r\n", c.len()).into_bytes());
                out.extend(c);
                out.extend(b"\r\n");
            }
            out.extend(b"0\r\n");
            for (k, v) in trailers {
                out.extend(format!("{k}: {v}\r\n").into_bytes());
            }
            out.extend(b"\r\n");
            out
        }

        proptest! {
            #![proptest_config(crate::proxy::fast::head::props::config(3000))]

            /// Random bytes in random pieces: no panic, never more consumed
            /// than given, and the same verdict however the bytes are cut.
            #[test]
            fn random_input_never_panics(body in prop::collection::vec(any::<u8>(), 0..400), step in 1usize..64) {
                let whole = run(&body, body.len().max(1));
                let pieces = run(&body, step);
                if let (Ok(a), Ok(b)) = (&whole, &pieces) {
                    prop_assert_eq!(a, b);
                    prop_assert!(a.0 <= body.len());
                }
                prop_assert_eq!(whole.is_err(), pieces.is_err());
            }

            /// A well-formed body with anything after it: the end is found
            /// exactly, in any pieces.
            #[test]
            fn well_formed_bodies_end_exactly(
                chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..6),
                trailers in prop::collection::vec(("[a-z]{1,8}", "[a-z0-9 ]{0,8}"), 0..3),
                after in prop::collection::vec(any::<u8>(), 0..40),
                step in 1usize..100,
            ) {
                let body = encode(&chunks, &trailers);
                let mut input = body.clone();
                input.extend(&after);
                prop_assert_eq!(run(&input, step), Ok((body.len(), true)));
            }
        }
    }
}
