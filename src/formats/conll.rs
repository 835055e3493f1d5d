//! CoNLL/IOB: one token per line, the tag in the last column (columns separated by
//! spaces or tabs).
//!
//! `-DOCSTART-` lines are skipped; blank or whitespace-only lines end a sentence. One
//! asset per sentence: its text is the tokens joined by single spaces, its spans come
//! from the tags, its external id is `<file name>:<sentence number from 1>`. Both IOB1
//! and IOB2 are read: `B-x` always starts an entity, `I-x` continues an entity of class
//! x and starts one otherwise.

use std::io::BufRead;

use super::Record;
use crate::model::asset::NewAsset;
use crate::model::error::{Error, Result};
use crate::model::label::{Answer, NewLabel, Span};

/// A sentence being read.
#[derive(Default)]
struct Sentence {
    first_line: u64,
    text: String,
    spans: Vec<Span>,
    open: Option<(String, usize)>,
    error: Option<(u64, Error)>,
}

impl Sentence {
    fn close_entity(&mut self) {
        if let Some((class, start)) = self.open.take() {
            // Offsets are below 4 GiB: a record that large fails validation anyway.
            self.spans.push(Span {
                start: start as u32,
                end: self.text.len() as u32,
                class,
                score: None,
            });
        }
    }

    fn push(&mut self, line_no: u64, line: &str) {
        if self.error.is_some() {
            return;
        }
        // Columns are separated by ASCII spaces and tabs only: a token may hold any
        // other Unicode, including non-breaking and ideographic spaces.
        let mut cols = line.split([' ', '\t', '\r', '\n']).filter(|c| !c.is_empty());
        let token = cols.next().unwrap_or_default();
        let Some(tag) = cols.next_back() else {
            self.error = Some((
                line_no,
                Error::invalid(
                    "CoNLL line",
                    format!("{line:?} has no tag column (expected TOKEN ... TAG)"),
                ),
            ));
            return;
        };
        let tag = match parse_tag(tag) {
            Ok(t) => t,
            Err(e) => {
                self.error = Some((line_no, e));
                return;
            }
        };
        // The token's bytes start after the joining space.
        let sep = usize::from(!self.text.is_empty());
        let start = self.text.len() + sep;
        match tag {
            Tag::Outside => self.close_entity(),
            Tag::Begin(class) => {
                self.close_entity();
                self.open = Some((class.to_string(), start));
            }
            Tag::Inside(class) => {
                if self.open.as_ref().map(|(c, _)| c.as_str()) != Some(class) {
                    self.close_entity();
                    self.open = Some((class.to_string(), start));
                }
            }
        }
        if sep == 1 {
            self.text.push(' ');
        }
        self.text.push_str(token);
    }
}

enum Tag<'a> {
    Outside,
    Begin(&'a str),
    Inside(&'a str),
}

fn parse_tag(tag: &str) -> Result<Tag<'_>> {
    if tag == "O" {
        return Ok(Tag::Outside);
    }
    match tag.split_once('-') {
        Some(("B", class)) if !class.is_empty() => Ok(Tag::Begin(class)),
        Some(("I", class)) if !class.is_empty() => Ok(Tag::Inside(class)),
        _ => Err(Error::invalid(
            "CoNLL tag",
            format!("{tag:?} is not an IOB tag (O, B-CLASS or I-CLASS)"),
        )),
    }
}

/// Reads sentences as records. Only an I/O failure is an `Err` of the iterator.
pub(crate) fn records<'a, R: BufRead + 'a>(
    mut reader: R,
    file_name: &'a str,
    job: &'a str,
    author: &'a str,
) -> impl Iterator<Item = Result<Record>> + 'a {
    let mut line_no = 0u64;
    let mut sentence_no = 0u64;
    let mut buf = Vec::new();
    let mut current: Option<Sentence> = None;
    let mut done = false;
    std::iter::from_fn(move || loop {
        if done {
            return None;
        }
        buf.clear();
        let n = match reader.read_until(b'\n', &mut buf) {
            Ok(n) => n,
            Err(cause) => {
                done = true;
                return Some(Err(Error::Io {
                    path: file_name.to_string(),
                    cause,
                }));
            }
        };
        let ends_sentence = if n == 0 {
            done = true;
            true
        } else {
            line_no += 1;
            match std::str::from_utf8(&buf) {
                Err(e) => {
                    let s = current.get_or_insert_with(|| Sentence {
                        first_line: line_no,
                        ..Sentence::default()
                    });
                    if s.error.is_none() {
                        s.error = Some((line_no, Error::invalid("line", format!("not valid UTF-8 ({e})"))));
                    }
                    false
                }
                Ok(line) if line.trim_matches([' ', '\t', '\r', '\n']).is_empty() => true,
                Ok(line) if line.trim_start().starts_with("-DOCSTART-") => current.is_some(),
                Ok(line) => {
                    current
                        .get_or_insert_with(|| Sentence {
                            first_line: line_no,
                            ..Sentence::default()
                        })
                        .push(line_no, line);
                    false
                }
            }
        };
        if !ends_sentence {
            continue;
        }
        let Some(mut s) = current.take() else {
            continue;
        };
        sentence_no += 1;
        if let Some((line, e)) = s.error {
            return Some(Ok((line, Err(e))));
        }
        s.close_entity();
        let label = NewLabel::annotation(author).answer(job, Answer::Spans(s.spans));
        let asset = NewAsset::text(format!("{file_name}:{sentence_no}"), s.text).with_label(label);
        return Some(Ok((s.first_line, Ok(asset))));
    })
}
