//! The textual query language: text to [`Filter`] ([`parse`]) and back
//! ([`to_query_string`]).
//!
//! The language is specified in `docs/query.md`. The parser is hand-written: a small
//! character-level lexer (`Lexer`) that the recursive-descent `Parser` asks for the
//! token its context allows (a bare word, a quoted string, a comparison operator, a
//! number), because what a word may contain depends on where it stands (`clf@3` is a
//! model name, `0.7` a number, `deliv*` a prefix).
//!
//! Invariants: the parser never panics and never indexes a string off a char
//! boundary (every position comes from stepping over whole chars); recursion is
//! bounded by [`MAX_NESTING`] and the tree size by [`MAX_OPERATORS`], so that neither
//! parsing nor dropping or evaluating the result can overflow the stack.

use crate::model::asset::{MetaValue, Status};
use crate::model::error::{Error, Result};
use crate::model::label::LabelKind;

use super::ast::{CmpOp, Filter, NumField, TextQuery};

/// Deepest nesting of `(` and `NOT` the parser accepts.
pub const MAX_NESTING: usize = 128;

/// Most boolean operators (`AND`, `OR`, `NOT`, implicit `AND`) in one query.
pub const MAX_OPERATORS: usize = 1000;

// What the parser expected, as reported in `Error::Query::expected`.
const FILTER: &str = "a filter";
const END: &str = "end of query";
const RPAREN: &str = "`)`";
const COLON: &str = "`:`";
const NUMBER: &str = "a number";
const CMP: &str = "a comparison operator (`<`, `<=`, `>`, `>=`, `=`)";
const STATUS: &str = "a status (todo, ongoing, labeled, to_review, reviewed)";
const TEXT: &str = "a word, a prefix (`word*`) or a quoted phrase";
const BOUNDARY: &str = "a space, `(`, `)` or end of query";
const FIELD: &str = "a field name (status, label.JOB, prediction.JOB, inference.JOB, \
    review.JOB, author, model, rule, meta.KEY, text; before a comparison: \
    prediction.score, prediction.JOB.score, inference.score, inference.JOB.score, \
    priority, seconds, created, labels)";
const DOT_JOB: &str = "`.` and a job name";
const DOT_KEY: &str = "`.` and a metadata key";
const COLON_AFTER_JOB: &str = "`:` (a job name containing `.` must be quoted)";
const COLON_OR_SCORE: &str = "`:` (or `.score` before a comparison)";
const SCORE: &str = "`score` (a job name containing `.` must be quoted)";
const AFTER_FIELD: &str = "`:` or a comparison operator after the field name";
const CLOSING_QUOTE: &str = "a closing `\"`";
const ESCAPE: &str = "`\\\"` or `\\\\` (the only escapes)";
const JOB: &str = "a job name (letters, digits, `_`, `-`) or a quoted string";
const CLASS: &str = "a class name (letters, digits, `_`, `-`) or a quoted string";
const KEY: &str = "a metadata key (letters, digits, `_`, `-`) or a quoted string";
const USER: &str = "a user name (letters, digits, `_`, `-`, `.`, `@`) or a quoted string";
const MODEL: &str = "a model name (letters, digits, `_`, `-`, `.`, `@`) or a quoted string";
const RULE: &str = "a rule name (letters, digits, `_`, `-`, `.`, `@`) or a quoted string";
const META_VALUE: &str = "a metadata value (true, false, letters, digits, `_`, `-`, `.`, `@`) or a quoted string";

/// Longest excerpt of the input quoted in an error's `found`, in chars.
const FOUND_MAX_CHARS: usize = 32;

/// Parses the query language into a Filter.
///
/// Empty (or blank) input and `*` give [`Filter::All`]. The language — fields,
/// operators, precedence, quoting and limits — is specified in `docs/query.md`.
///
/// For example `prediction.score < 0.7 AND NOT honeypot` gives
/// `Numeric { Score { Prediction, None }, Lt, 0.7 }.and(Honeypot.not())`.
///
/// # Errors
///
/// [`Error::Query`] with the 0-based byte offset of the problem, what was expected
/// there and what was found, e.g. `status:` gives position 7, expected
/// `a status (todo, ongoing, labeled, to_review, reviewed)`, found `end of query`.
pub fn parse(input: &str) -> Result<Filter> {
    let mut p = Parser {
        lx: Lexer { src: input, pos: 0 },
        nesting: 0,
        operators: 0,
    };
    p.lx.skip_ws();
    if p.lx.peek().is_none() {
        return Ok(Filter::All);
    }
    let filter = p.or_expr()?;
    p.lx.skip_ws();
    if p.lx.peek().is_some() {
        return Err(p.lx.error(p.lx.pos, END));
    }
    Ok(filter)
}

/// Prints a [`Filter`] in the query language, quoting where needed, so that
/// [`parse`] gives the same filter back.
///
/// The output is canonical: explicit `AND`, lower-case keywords and fields, the fewest
/// parentheses that keep the tree's shape, text queries always as `text:…`.
///
/// The round trip holds for every filter the parser can produce. It cannot hold for
/// values the language has no syntax for; these print as text that [`parse`] rejects
/// rather than as a different filter: a NaN number, [`MetaValue::Num`] (printed
/// `meta.KEY = N`), a [`NumField::Score`] of kind [`LabelKind::Annotation`] or
/// [`LabelKind::Review`] (printed `label.score`, `review.score`), and a
/// [`TextQuery`] not in the parser's normal form (empty, upper-case, a term with
/// spaces, a phrase of fewer than two words). Infinite numbers print as `1e999` and
/// `-1e999`. Trees deeper than [`MAX_NESTING`] or with more than [`MAX_OPERATORS`]
/// operators print fine but do not parse back.
///
/// For example `status:TODO author:"Ann Lee" OR NOT (a OR b)` prints as
/// `status:todo AND author:"Ann Lee" OR NOT (text:a OR text:b)`.
pub fn to_query_string(filter: &Filter) -> String {
    let mut out = String::new();
    write_filter(&mut out, filter);
    out
}

// ---------------------------------------------------------------------------------
// Character classes.

/// A char of a bare word: anything but whitespace and the language's punctuation.
fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '(' | ')' | ':' | '"' | '<' | '>' | '=' | '*')
}

/// A char of a bare field segment (`label.JOB`): a word char other than `.`.
fn is_segment_char(c: char) -> bool {
    is_word_char(c) && c != '.'
}

/// A char of a bare job, class or metadata key.
fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

/// A char of a bare user, model, rule name or metadata value.
fn is_name_char(c: char) -> bool {
    is_ident_char(c) || c == '.' || c == '@'
}

// ---------------------------------------------------------------------------------
// Lexer.

/// A cursor over the query that reads one token of the kind the parser asks for.
///
/// `pos` is always on a char boundary: it only moves by whole chars.
#[derive(Clone)]
struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// Consumes the longest run of chars satisfying `pred` (possibly empty).
    fn run(&mut self, pred: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c: char| !pred(c)).unwrap_or(rest.len());
        self.pos += len;
        rest.get(..len).unwrap_or("")
    }

    /// The bare word at the cursor, not consumed.
    fn peek_word(&self) -> &'a str {
        self.clone().run(is_word_char)
    }

    /// Reads a quoted string; the cursor is on its opening `"`.
    fn quoted(&mut self) -> Result<String> {
        self.bump();
        let mut out = String::new();
        loop {
            let at = self.pos;
            match self.bump() {
                None => return Err(self.error(self.pos, CLOSING_QUOTE)),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some(c @ ('"' | '\\')) => out.push(c),
                    Some(c) => return Err(query_error(at, ESCAPE, show(&format!("\\{c}")))),
                    None => return Err(self.error(self.pos, CLOSING_QUOTE)),
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// Whether a comparison operator is at the cursor.
    fn at_cmp(&self) -> bool {
        matches!(self.peek(), Some('<' | '>' | '='))
    }

    fn cmp_op(&mut self) -> Option<CmpOp> {
        let op = match self.peek()? {
            '<' => CmpOp::Lt,
            '>' => CmpOp::Gt,
            '=' => CmpOp::Eq,
            _ => return None,
        };
        self.bump();
        Some(match op {
            CmpOp::Lt if self.eat('=') => CmpOp::Le,
            CmpOp::Gt if self.eat('=') => CmpOp::Ge,
            op => op,
        })
    }

    /// Skips a field path such as `label.category` or `prediction."my job".score` and
    /// returns whether it had a quoted segment. Quoted segments only follow a `.`.
    fn skip_path(&mut self) -> Result<bool> {
        let mut quoted = false;
        'segments: loop {
            self.run(is_segment_char);
            if !self.eat('.') {
                break;
            }
            while self.peek() == Some('"') {
                self.quoted()?;
                quoted = true;
                if !self.eat('.') {
                    break 'segments;
                }
            }
        }
        Ok(quoted)
    }

    /// What is at `pos`, for an error's `found`.
    fn describe(&self, pos: usize) -> String {
        let rest = self.src.get(pos..).unwrap_or("");
        let mut chars = rest.chars();
        let Some(c) = chars.next() else {
            return END.to_string();
        };
        if c == '"' {
            return "a quoted string".to_string();
        }
        let len = if is_word_char(c) {
            rest.find(|c: char| !is_word_char(c)).unwrap_or(rest.len())
        } else if matches!(c, '<' | '>') && chars.next() == Some('=') {
            2
        } else {
            c.len_utf8()
        };
        show(rest.get(..len).unwrap_or(""))
    }

    /// An error at `pos` whose `found` describes the input there.
    fn error(&self, pos: usize, expected: &str) -> Error {
        query_error(pos, expected, self.describe(pos))
    }
}

fn query_error(pos: usize, expected: &str, found: String) -> Error {
    Error::Query {
        pos,
        expected: expected.to_string(),
        found,
    }
}

/// An excerpt of the input between backticks, control chars escaped, long ones cut.
fn show(text: &str) -> String {
    let mut out = String::from("`");
    for (i, c) in text.chars().enumerate() {
        if i == FOUND_MAX_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('`');
    out
}

/// Checks that every char of a bare value is allowed; the error points at the first
/// one that is not.
fn validate(start: usize, text: &str, allowed: fn(char) -> bool, expected: &str) -> Result<()> {
    match text.char_indices().find(|&(_, c)| !allowed(c)) {
        Some((i, c)) => Err(query_error(start + i, expected, show(&c.to_string()))),
        None => Ok(()),
    }
}

/// A number: optional sign, digits with an optional fraction (at least one digit in
/// all), optional exponent. Unlike `f64::from_str`, no `inf` or `NaN`. Too large a
/// magnitude gives an infinity.
fn parse_number(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    let digits_from = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let int_end = digits_from(i);
    let mut digits = int_end - i;
    i = int_end;
    if b.get(i) == Some(&b'.') {
        let frac_end = digits_from(i + 1);
        digits += frac_end - (i + 1);
        i = frac_end;
    }
    if digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_end = digits_from(i);
        if exp_end == i {
            return None;
        }
        i = exp_end;
    }
    if i != b.len() {
        return None;
    }
    text.parse().ok()
}

// ---------------------------------------------------------------------------------
// Parser.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Keyword {
    And,
    Or,
    Not,
}

fn keyword(word: &str) -> Option<Keyword> {
    if word.eq_ignore_ascii_case("and") {
        Some(Keyword::And)
    } else if word.eq_ignore_ascii_case("or") {
        Some(Keyword::Or)
    } else if word.eq_ignore_ascii_case("not") {
        Some(Keyword::Not)
    } else {
        None
    }
}

/// Recursive descent over the grammar in docs/query.md: `or_expr` → `and_expr` →
/// `unary` → `primary`.
struct Parser<'a> {
    lx: Lexer<'a>,
    /// Current depth of `(` and `NOT`.
    nesting: usize,
    /// Boolean operators read so far.
    operators: usize,
}

impl Parser<'_> {
    /// The keyword at the cursor (after whitespace) and its length in bytes.
    fn peek_keyword(&mut self) -> Option<(Keyword, usize)> {
        self.lx.skip_ws();
        let word = self.lx.peek_word();
        keyword(word).map(|k| (k, word.len()))
    }

    fn count_operator(&mut self, at: usize) -> Result<()> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            let expected = format!("at most {MAX_OPERATORS} operators in a query");
            return Err(self.lx.error(at, &expected));
        }
        Ok(())
    }

    fn enter(&mut self, at: usize) -> Result<()> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            let expected = format!("at most {MAX_NESTING} levels of nested `(` and NOT");
            return Err(self.lx.error(at, &expected));
        }
        Ok(())
    }

    /// `or_expr = and_expr { "OR" and_expr }`
    fn or_expr(&mut self) -> Result<Filter> {
        let mut left = self.and_expr()?;
        while let Some((Keyword::Or, len)) = self.peek_keyword() {
            let at = self.lx.pos;
            self.lx.pos += len;
            self.count_operator(at)?;
            let right = self.and_expr()?;
            left = left.or(right);
        }
        Ok(left)
    }

    /// `and_expr = unary { [ "AND" ] unary }`
    fn and_expr(&mut self) -> Result<Filter> {
        let mut left = self.unary()?;
        loop {
            let keyword = self.peek_keyword();
            let at = self.lx.pos;
            match keyword {
                Some((Keyword::Or, _)) => return Ok(left),
                Some((Keyword::And, len)) => self.lx.pos += len,
                // Juxtaposition is an implicit AND; only `)`, `OR` and the end stop it.
                _ if matches!(self.lx.peek(), None | Some(')')) => return Ok(left),
                _ => {}
            }
            self.count_operator(at)?;
            let right = self.unary()?;
            left = left.and(right);
        }
    }

    /// `unary = "NOT" unary | primary`
    fn unary(&mut self) -> Result<Filter> {
        if let Some((Keyword::Not, len)) = self.peek_keyword() {
            let at = self.lx.pos;
            self.lx.pos += len;
            self.count_operator(at)?;
            self.enter(at)?;
            let inner = self.unary()?;
            self.nesting -= 1;
            return Ok(inner.not());
        }
        self.primary()
    }

    /// `primary = "(" or_expr ")" | "*" | quoted_text | word_primary`
    fn primary(&mut self) -> Result<Filter> {
        self.lx.skip_ws();
        let start = self.lx.pos;
        match self.lx.peek() {
            Some('(') => {
                self.enter(start)?;
                self.lx.bump();
                let inner = self.or_expr()?;
                self.nesting -= 1;
                self.lx.skip_ws();
                if !self.lx.eat(')') {
                    return Err(self.lx.error(self.lx.pos, RPAREN));
                }
                Ok(inner)
            }
            Some('*') => {
                self.lx.bump();
                self.boundary()?;
                Ok(Filter::All)
            }
            Some('"') => {
                let text = self.text_value()?;
                self.boundary()?;
                Ok(text)
            }
            Some(c) if is_word_char(c) => self.word_primary(),
            _ => Err(self.lx.error(start, FILTER)),
        }
    }

    /// A primary that starts with a bare word: a field filter if a `:` or a comparison
    /// follows the word (or field path), else a keyword or a text term.
    fn word_primary(&mut self) -> Result<Filter> {
        let start = self.lx.pos;
        let mut look = self.lx.clone();
        let quoted = look.skip_path()?;
        let end = look.pos;
        look.skip_ws();
        if look.peek() == Some(':') || look.at_cmp() {
            return self.field();
        }
        if quoted {
            return Err(look.error(look.pos, AFTER_FIELD));
        }
        // Without quoted segments the path is exactly the bare word.
        let word = self.lx.src.get(start..end).unwrap_or("");
        self.lx.pos = end;
        if keyword(word).is_some() {
            return Err(self.lx.error(start, FILTER));
        }
        let filter = if self.lx.eat('*') {
            Filter::Text(TextQuery::Prefix(word.to_lowercase()))
        } else if word.eq_ignore_ascii_case("honeypot") {
            Filter::Honeypot
        } else if word.eq_ignore_ascii_case("deleted") {
            Filter::Deleted
        } else {
            Filter::Text(TextQuery::Term(word.to_lowercase()))
        };
        self.boundary()?;
        Ok(filter)
    }

    /// After an atom: whitespace, a parenthesis or the end, so that `a"b"` or
    /// `status:todo:x` are errors rather than silent implicit ANDs.
    fn boundary(&self) -> Result<()> {
        match self.lx.peek() {
            None | Some('(' | ')') => Ok(()),
            Some(c) if c.is_whitespace() => Ok(()),
            Some(_) => Err(self.lx.error(self.lx.pos, BOUNDARY)),
        }
    }

    /// A field filter: the cursor is on a field path followed by `:` or a comparison.
    fn field(&mut self) -> Result<Filter> {
        let start = self.lx.pos;
        let head = self.lx.run(is_segment_char).to_ascii_lowercase();
        let filter = match head.as_str() {
            "status" => {
                self.colon(COLON)?;
                Filter::Status(self.status_value()?)
            }
            "author" => {
                self.colon(COLON)?;
                Filter::Author(self.value(is_name_char, USER)?)
            }
            "model" => {
                self.colon(COLON)?;
                Filter::Model(self.value(is_name_char, MODEL)?)
            }
            "rule" => {
                self.colon(COLON)?;
                Filter::Rule(self.value(is_name_char, RULE)?)
            }
            "text" => {
                self.colon(COLON)?;
                self.text_value()?
            }
            "label" => self.class(LabelKind::Annotation)?,
            "review" => self.class(LabelKind::Review)?,
            "prediction" => self.prediction(LabelKind::Prediction)?,
            "inference" => self.prediction(LabelKind::Inference)?,
            "meta" => self.meta()?,
            "priority" => self.numeric(NumField::Priority)?,
            "seconds" => self.numeric(NumField::Seconds)?,
            "created" => self.numeric(NumField::Created)?,
            "labels" => self.numeric(NumField::Labels)?,
            _ => return Err(self.lx.error(start, FIELD)),
        };
        self.boundary()?;
        Ok(filter)
    }

    fn colon(&mut self, expected: &str) -> Result<()> {
        self.lx.skip_ws();
        if self.lx.eat(':') {
            Ok(())
        } else {
            Err(self.lx.error(self.lx.pos, expected))
        }
    }

    fn dot(&mut self, expected: &str) -> Result<()> {
        if self.lx.eat('.') {
            Ok(())
        } else {
            Err(self.lx.error(self.lx.pos, expected))
        }
    }

    /// A path segment (job or metadata key): a quoted string or a bare identifier.
    fn segment(&mut self, expected: &str) -> Result<String> {
        if self.lx.peek() == Some('"') {
            return self.lx.quoted();
        }
        let start = self.lx.pos;
        let text = self.lx.run(is_segment_char);
        if text.is_empty() {
            return Err(self.lx.error(start, expected));
        }
        validate(start, text, is_ident_char, expected)?;
        Ok(text.to_string())
    }

    /// A value after `:`: a quoted string, or a bare word whose chars all satisfy
    /// `allowed`.
    fn value(&mut self, allowed: fn(char) -> bool, expected: &str) -> Result<String> {
        self.lx.skip_ws();
        if self.lx.peek() == Some('"') {
            return self.lx.quoted();
        }
        let start = self.lx.pos;
        let text = self.lx.run(is_word_char);
        if text.is_empty() {
            return Err(self.lx.error(start, expected));
        }
        validate(start, text, allowed, expected)?;
        Ok(text.to_string())
    }

    fn status_value(&mut self) -> Result<Status> {
        self.lx.skip_ws();
        let start = self.lx.pos;
        let text = if self.lx.peek() == Some('"') {
            self.lx.quoted()?
        } else {
            self.lx.run(is_word_char).to_string()
        };
        if text.is_empty() && self.lx.pos == start {
            return Err(self.lx.error(start, STATUS));
        }
        text.parse().map_err(|_| query_error(start, STATUS, show(&text)))
    }

    /// `label.JOB:CLASS` and `review.JOB:CLASS`, after the head.
    fn class(&mut self, kind: LabelKind) -> Result<Filter> {
        self.dot(DOT_JOB)?;
        let job = self.segment(JOB)?;
        self.colon(COLON_AFTER_JOB)?;
        let class = self.value(is_ident_char, CLASS)?;
        Ok(Filter::Class { kind, job, class })
    }

    /// `prediction.JOB:CLASS`, `prediction.score OP N`, `prediction.JOB.score OP N`
    /// (and `inference.…`), after the head.
    fn prediction(&mut self, kind: LabelKind) -> Result<Filter> {
        self.dot(DOT_JOB)?;
        let bare = self.lx.peek() != Some('"');
        let job = self.segment(JOB)?;
        if bare && job.eq_ignore_ascii_case("score") {
            let mut look = self.lx.clone();
            look.skip_ws();
            if look.at_cmp() {
                return self.numeric(NumField::Score { kind, job: None });
            }
        }
        if self.lx.eat('.') {
            let at = self.lx.pos;
            if !self.lx.run(is_segment_char).eq_ignore_ascii_case("score") {
                return Err(self.lx.error(at, SCORE));
            }
            return self.numeric(NumField::Score { kind, job: Some(job) });
        }
        self.colon(COLON_OR_SCORE)?;
        let class = self.value(is_ident_char, CLASS)?;
        Ok(Filter::Class { kind, job, class })
    }

    /// `meta.KEY:VALUE`, after the head.
    fn meta(&mut self) -> Result<Filter> {
        self.dot(DOT_KEY)?;
        let key = self.segment(KEY)?;
        self.colon(COLON)?;
        self.lx.skip_ws();
        let value = if self.lx.peek() == Some('"') {
            MetaValue::Str(self.lx.quoted()?)
        } else {
            match self.value(is_name_char, META_VALUE)? {
                v if v == "true" => MetaValue::Bool(true),
                v if v == "false" => MetaValue::Bool(false),
                v => MetaValue::Str(v),
            }
        };
        Ok(Filter::Meta { key, value })
    }

    /// `OP NUMBER`, after a numeric field.
    fn numeric(&mut self, field: NumField) -> Result<Filter> {
        self.lx.skip_ws();
        let Some(op) = self.lx.cmp_op() else {
            return Err(self.lx.error(self.lx.pos, CMP));
        };
        self.lx.skip_ws();
        let start = self.lx.pos;
        let text = self.lx.run(is_word_char);
        match parse_number(text) {
            Some(value) => Ok(Filter::Numeric { field, op, value }),
            None => Err(self.lx.error(start, NUMBER)),
        }
    }

    /// The value of `text:` (also a bare quoted string): `word`, `word*`, `"phrase"`,
    /// `"prefix"*`. Text is lower-cased; a quoted string is split on whitespace.
    fn text_value(&mut self) -> Result<Filter> {
        self.lx.skip_ws();
        let start = self.lx.pos;
        let query = if self.lx.peek() == Some('"') {
            let content = self.lx.quoted()?;
            let empty = || query_error(start, TEXT, "an empty string".to_string());
            if self.lx.eat('*') {
                if content.is_empty() {
                    return Err(empty());
                }
                TextQuery::Prefix(content.to_lowercase())
            } else {
                let mut words: Vec<String> = content.split_whitespace().map(str::to_lowercase).collect();
                match words.len() {
                    0 => return Err(empty()),
                    1 => TextQuery::Term(words.remove(0)),
                    _ => TextQuery::Phrase(words),
                }
            }
        } else {
            let word = self.lx.run(is_word_char);
            if word.is_empty() {
                return Err(self.lx.error(start, TEXT));
            }
            if self.lx.eat('*') {
                TextQuery::Prefix(word.to_lowercase())
            } else {
                TextQuery::Term(word.to_lowercase())
            }
        };
        Ok(Filter::Text(query))
    }
}

// ---------------------------------------------------------------------------------
// Printer.

fn write_filter(out: &mut String, filter: &Filter) {
    let is_or = |f: &Filter| matches!(f, Filter::Or(..));
    let is_binary = |f: &Filter| matches!(f, Filter::Or(..) | Filter::And(..));
    match filter {
        // Both operators are left-associative, and NOT binds tighter than AND,
        // which binds tighter than OR.
        Filter::Or(l, r) => {
            write_filter(out, l);
            out.push_str(" OR ");
            write_operand(out, r, is_or(r));
        }
        Filter::And(l, r) => {
            write_operand(out, l, is_or(l));
            out.push_str(" AND ");
            write_operand(out, r, is_binary(r));
        }
        Filter::Not(inner) => {
            out.push_str("NOT ");
            write_operand(out, inner, is_binary(inner));
        }
        atom => write_atom(out, atom),
    }
}

fn write_operand(out: &mut String, filter: &Filter, parens: bool) {
    if parens {
        out.push('(');
        write_filter(out, filter);
        out.push(')');
    } else {
        write_filter(out, filter);
    }
}

fn write_atom(out: &mut String, filter: &Filter) {
    match filter {
        Filter::All => out.push('*'),
        Filter::Status(s) => {
            out.push_str("status:");
            out.push_str(&s.as_str().to_ascii_lowercase());
        }
        Filter::Class { kind, job, class } => {
            out.push_str(kind_prefix(*kind));
            out.push('.');
            write_bare_or_quoted(out, job, is_ident_char);
            out.push(':');
            write_bare_or_quoted(out, class, is_ident_char);
        }
        Filter::Author(name) => write_named(out, "author:", name),
        Filter::Model(name) => write_named(out, "model:", name),
        Filter::Rule(name) => write_named(out, "rule:", name),
        Filter::Meta { key, value } => {
            out.push_str("meta.");
            write_bare_or_quoted(out, key, is_ident_char);
            match value {
                MetaValue::Bool(b) => out.push_str(if *b { ":true" } else { ":false" }),
                MetaValue::Str(s) if s == "true" || s == "false" => {
                    out.push(':');
                    write_quoted(out, s);
                }
                MetaValue::Str(s) => {
                    out.push(':');
                    write_bare_or_quoted(out, s, is_name_char);
                }
                // No syntax: this is rejected by the parser (see to_query_string).
                MetaValue::Num(n) => {
                    out.push_str(" = ");
                    out.push_str(&number_text(*n));
                }
            }
        }
        Filter::Honeypot => out.push_str("honeypot"),
        Filter::Deleted => out.push_str("deleted"),
        Filter::Numeric { field, op, value } => {
            match field {
                NumField::Score { kind, job } => {
                    out.push_str(kind_prefix(*kind));
                    out.push('.');
                    if let Some(job) = job {
                        write_bare_or_quoted(out, job, is_ident_char);
                        out.push('.');
                    }
                    out.push_str("score");
                }
                NumField::Priority => out.push_str("priority"),
                NumField::Seconds => out.push_str("seconds"),
                NumField::Created => out.push_str("created"),
                NumField::Labels => out.push_str("labels"),
            }
            out.push_str(match op {
                CmpOp::Lt => " < ",
                CmpOp::Le => " <= ",
                CmpOp::Gt => " > ",
                CmpOp::Ge => " >= ",
                CmpOp::Eq => " = ",
            });
            out.push_str(&number_text(*value));
        }
        Filter::Text(query) => {
            out.push_str("text:");
            match query {
                TextQuery::Term(word) => write_bare_or_quoted(out, word, is_word_char),
                TextQuery::Phrase(words) => write_quoted(out, &words.join(" ")),
                TextQuery::Prefix(word) => {
                    write_bare_or_quoted(out, word, is_word_char);
                    out.push('*');
                }
            }
        }
        Filter::And(..) | Filter::Or(..) | Filter::Not(..) => write_filter(out, filter),
    }
}

fn kind_prefix(kind: LabelKind) -> &'static str {
    match kind {
        LabelKind::Annotation => "label",
        LabelKind::Prediction => "prediction",
        LabelKind::Inference => "inference",
        LabelKind::Review => "review",
    }
}

fn write_named(out: &mut String, field: &str, name: &str) {
    out.push_str(field);
    write_bare_or_quoted(out, name, is_name_char);
}

fn write_bare_or_quoted(out: &mut String, text: &str, allowed: fn(char) -> bool) {
    if !text.is_empty() && text.chars().all(allowed) {
        out.push_str(text);
    } else {
        write_quoted(out, text);
    }
}

fn write_quoted(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// A number as the parser reads it back: `Display` of `f64` is the shortest text that
/// round-trips and never uses `inf`, `NaN` or an exponent.
fn number_text(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "1e999" } else { "-1e999" }.to_string()
    } else {
        // NaN prints `NaN`, which the parser rejects.
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(input: &str) -> Filter {
        match parse(input) {
            Ok(f) => f,
            Err(e) => panic!("{input:?} should parse: {e}"),
        }
    }

    /// The (pos, expected, found) of a query error.
    fn err(input: &str) -> (usize, String, String) {
        match parse(input) {
            Err(Error::Query { pos, expected, found }) => (pos, expected, found),
            other => panic!("{input:?} should be a query error, got {other:?}"),
        }
    }

    fn err_at(input: &str) -> usize {
        err(input).0
    }

    fn term(w: &str) -> Filter {
        Filter::Text(TextQuery::Term(w.into()))
    }

    fn class(kind: LabelKind, job: &str, class: &str) -> Filter {
        Filter::Class {
            kind,
            job: job.into(),
            class: class.into(),
        }
    }

    fn num(field: NumField, op: CmpOp, value: f64) -> Filter {
        Filter::Numeric { field, op, value }
    }

    fn score(kind: LabelKind, job: Option<&str>) -> NumField {
        NumField::Score {
            kind,
            job: job.map(str::to_string),
        }
    }

    fn meta(key: &str, value: MetaValue) -> Filter {
        Filter::Meta { key: key.into(), value }
    }

    #[test]
    fn empty_blank_and_star_are_all() {
        assert_eq!(p(""), Filter::All);
        assert_eq!(p("  \t\n"), Filter::All);
        assert_eq!(p("*"), Filter::All);
        assert_eq!(p(" * "), Filter::All);
        assert_eq!(p("* AND honeypot"), Filter::All.and(Filter::Honeypot));
    }

    #[test]
    fn status_accepts_every_spelling_of_from_str() {
        assert_eq!(p("status:todo"), Filter::Status(Status::Todo));
        assert_eq!(p("status:ONGOING"), Filter::Status(Status::Ongoing));
        assert_eq!(p("status:Labeled"), Filter::Status(Status::Labeled));
        assert_eq!(p("status:labelled"), Filter::Status(Status::Labeled));
        for s in ["to_review", "to-review", "toreview", "TO_REVIEW", "\"to review\""] {
            if s.contains(' ') {
                // A space is not an accepted spelling, even quoted.
                assert_eq!(err_at(&format!("status:{s}")), 7);
            } else {
                assert_eq!(p(&format!("status:{s}")), Filter::Status(Status::ToReview));
            }
        }
        assert_eq!(p("status:\"reviewed\""), Filter::Status(Status::Reviewed));
        assert_eq!(p("status : todo"), Filter::Status(Status::Todo));
        assert_eq!(p("STATUS:todo"), Filter::Status(Status::Todo));
    }

    #[test]
    fn class_fields_map_to_their_label_kind() {
        assert_eq!(
            p("label.category:invoice"),
            class(LabelKind::Annotation, "category", "invoice")
        );
        assert_eq!(
            p("prediction.category:invoice"),
            class(LabelKind::Prediction, "category", "invoice")
        );
        assert_eq!(
            p("inference.category:invoice"),
            class(LabelKind::Inference, "category", "invoice")
        );
        assert_eq!(
            p("review.category:invoice"),
            class(LabelKind::Review, "category", "invoice")
        );
        assert_eq!(
            p("label.job_1-a:CLASS-2_x"),
            class(LabelKind::Annotation, "job_1-a", "CLASS-2_x")
        );
        assert_eq!(
            p(r#"label.category:"creative work""#),
            class(LabelKind::Annotation, "category", "creative work")
        );
        assert_eq!(
            p(r#"label."my.job":"a \"b\" \\ c""#),
            class(LabelKind::Annotation, "my.job", r#"a "b" \ c"#)
        );
        assert_eq!(p(r#"review."":"""#), class(LabelKind::Review, "", ""));
        // A job called `score` is a job when a `:` follows.
        assert_eq!(
            p("prediction.score:high"),
            class(LabelKind::Prediction, "score", "high")
        );
        assert_eq!(
            p("label.catégorie:été"),
            class(LabelKind::Annotation, "catégorie", "été")
        );
    }

    #[test]
    fn author_model_rule_take_names_with_at_and_dots() {
        assert_eq!(p("author:alice"), Filter::Author("alice".into()));
        assert_eq!(
            p("author:a.lee@example-corp_1"),
            Filter::Author("a.lee@example-corp_1".into())
        );
        assert_eq!(p(r#"author:"Ann Lee""#), Filter::Author("Ann Lee".into()));
        assert_eq!(p("model:clf@3"), Filter::Model("clf@3".into()));
        assert_eq!(p("model:clf"), Filter::Model("clf".into()));
        assert_eq!(p("model:clf-v1.2@3"), Filter::Model("clf-v1.2@3".into()));
        assert_eq!(p("rule:products@1"), Filter::Rule("products@1".into()));
        assert_eq!(p("rule:products"), Filter::Rule("products".into()));
    }

    #[test]
    fn meta_values_are_bools_or_strings() {
        assert_eq!(p("meta.urgent:true"), meta("urgent", MetaValue::Bool(true)));
        assert_eq!(p("meta.urgent:false"), meta("urgent", MetaValue::Bool(false)));
        assert_eq!(
            p(r#"meta.urgent:"true""#),
            meta("urgent", MetaValue::Str("true".into()))
        );
        assert_eq!(p("meta.urgent:True"), meta("urgent", MetaValue::Str("True".into())));
        assert_eq!(p("meta.lang:en-US"), meta("lang", MetaValue::Str("en-US".into())));
        // Bare numbers stay strings.
        assert_eq!(p("meta.zip:01234"), meta("zip", MetaValue::Str("01234".into())));
        assert_eq!(p("meta.v:1.5"), meta("v", MetaValue::Str("1.5".into())));
        assert_eq!(
            p(r#"meta."source url":"http://x/y""#),
            meta("source url", MetaValue::Str("http://x/y".into()))
        );
    }

    #[test]
    fn honeypot_and_deleted_are_case_insensitive_keywords() {
        assert_eq!(p("honeypot"), Filter::Honeypot);
        assert_eq!(p("HoneyPot"), Filter::Honeypot);
        assert_eq!(p("deleted"), Filter::Deleted);
        assert_eq!(p("DELETED"), Filter::Deleted);
        // Quoted or after `text:` they are words.
        assert_eq!(p("text:honeypot"), term("honeypot"));
        assert_eq!(p("\"deleted\""), term("deleted"));
    }

    #[test]
    fn numeric_fields_and_operators() {
        use LabelKind::{Inference, Prediction};
        assert_eq!(
            p("prediction.score < 0.7"),
            num(score(Prediction, None), CmpOp::Lt, 0.7)
        );
        assert_eq!(p("prediction.score<0.7"), num(score(Prediction, None), CmpOp::Lt, 0.7));
        assert_eq!(
            p("prediction.category.score <= 0.5"),
            num(score(Prediction, Some("category")), CmpOp::Le, 0.5)
        );
        assert_eq!(p("inference.score>1e-3"), num(score(Inference, None), CmpOp::Gt, 1e-3));
        assert_eq!(
            p("inference.cat.score >= -2"),
            num(score(Inference, Some("cat")), CmpOp::Ge, -2.0)
        );
        assert_eq!(
            p(r#"prediction."my job".score = .5"#),
            num(score(Prediction, Some("my job")), CmpOp::Eq, 0.5)
        );
        assert_eq!(
            p("prediction.score.score < 1"),
            num(score(Prediction, Some("score")), CmpOp::Lt, 1.0)
        );
        assert_eq!(p("Prediction.SCORE < 1"), num(score(Prediction, None), CmpOp::Lt, 1.0));
        assert_eq!(p("priority >= 5"), num(NumField::Priority, CmpOp::Ge, 5.0));
        assert_eq!(p("seconds=+12.5E2"), num(NumField::Seconds, CmpOp::Eq, 1250.0));
        assert_eq!(p("created > 1700000000000"), num(NumField::Created, CmpOp::Gt, 1.7e12));
        assert_eq!(p("labels<2"), num(NumField::Labels, CmpOp::Lt, 2.0));
        assert_eq!(p("labels < 1."), num(NumField::Labels, CmpOp::Lt, 1.0));
        assert_eq!(p("priority < 1e999"), num(NumField::Priority, CmpOp::Lt, f64::INFINITY));
    }

    #[test]
    fn text_terms_phrases_and_prefixes_are_lowercased() {
        assert_eq!(p("text:Word"), term("word"));
        assert_eq!(p("Invoice"), term("invoice"));
        assert_eq!(
            p("text:\"Urgent  Delivery\""),
            Filter::Text(TextQuery::Phrase(vec!["urgent".into(), "delivery".into()]))
        );
        assert_eq!(
            p("\"a phrase\""),
            Filter::Text(TextQuery::Phrase(vec!["a".into(), "phrase".into()]))
        );
        assert_eq!(p("text:\" One \""), term("one"));
        assert_eq!(p("text:deliv*"), Filter::Text(TextQuery::Prefix("deliv".into())));
        assert_eq!(p("DELIV*"), Filter::Text(TextQuery::Prefix("deliv".into())));
        assert_eq!(p(r#"text:"a:b"*"#), Filter::Text(TextQuery::Prefix("a:b".into())));
        assert_eq!(p("text:AND"), term("and"));
        assert_eq!(p("text: e.g."), term("e.g."));
        assert_eq!(p("café"), term("café"));
        assert_eq!(p("ÉTÉ"), term("été"));
        // Field names without `:` or a comparison are plain words.
        assert_eq!(p("status"), term("status"));
        assert_eq!(p("priority"), term("priority"));
    }

    #[test]
    fn not_binds_tighter_than_and_tighter_than_or() {
        let (a, b, c) = (term("a"), term("b"), term("c"));
        assert_eq!(p("a OR b AND NOT c"), a.clone().or(b.clone().and(c.clone().not())));
        assert_eq!(p("a AND b OR c"), a.clone().and(b.clone()).or(c.clone()));
        assert_eq!(p("NOT a AND b"), a.clone().not().and(b.clone()));
        assert_eq!(p("NOT NOT a"), a.clone().not().not());
    }

    #[test]
    fn and_and_or_are_left_associative() {
        let (a, b, c) = (term("a"), term("b"), term("c"));
        assert_eq!(p("a OR b OR c"), a.clone().or(b.clone()).or(c.clone()));
        assert_eq!(p("a AND b AND c"), a.clone().and(b.clone()).and(c.clone()));
    }

    #[test]
    fn juxtaposition_is_an_implicit_and() {
        let (a, b, c) = (term("a"), term("b"), term("c"));
        assert_eq!(p("a b"), a.clone().and(b.clone()));
        assert_eq!(p("a b OR c"), a.clone().and(b.clone()).or(c.clone()));
        assert_eq!(p("a NOT b"), a.clone().and(b.clone().not()));
        assert_eq!(p("a(b)"), a.clone().and(b.clone()));
        assert_eq!(p("(a)(b)"), a.clone().and(b.clone()));
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let (a, b) = (term("a"), term("b"));
        assert_eq!(p("a and b"), a.clone().and(b.clone()));
        assert_eq!(p("a Or b"), a.clone().or(b.clone()));
        assert_eq!(p("nOt a"), a.clone().not());
        // Words that merely start with a keyword are words.
        assert_eq!(
            p("android notes order"),
            term("android").and(term("notes")).and(term("order"))
        );
    }

    #[test]
    fn parentheses_group() {
        let (a, b, c) = (term("a"), term("b"), term("c"));
        assert_eq!(p("(a OR b) AND c"), a.clone().or(b.clone()).and(c.clone()));
        assert_eq!(p("a AND (b OR c)"), a.clone().and(b.clone().or(c.clone())));
        assert_eq!(p("NOT (a OR b)"), a.clone().or(b.clone()).not());
        assert_eq!(p("((a))"), a.clone());
        assert_eq!(p("( a OR(b) )"), a.clone().or(b.clone()));
    }

    #[test]
    fn design_example_parses() {
        let f = p(r#"status:todo AND label.category:invoice AND NOT author:alice AND text:"urgent delivery""#);
        let expected = Filter::Status(Status::Todo)
            .and(class(LabelKind::Annotation, "category", "invoice"))
            .and(Filter::Author("alice".into()).not())
            .and(Filter::Text(TextQuery::Phrase(vec![
                "urgent".into(),
                "delivery".into(),
            ])));
        assert_eq!(f, expected);
    }

    #[test]
    fn error_missing_status_points_past_the_colon() {
        assert_eq!(err("status:"), (7, STATUS.to_string(), "end of query".to_string()));
        assert_eq!(STATUS, "a status (todo, ongoing, labeled, to_review, reviewed)");
    }

    #[test]
    fn error_unknown_status_points_at_the_name() {
        assert_eq!(err("status:nope"), (7, STATUS.to_string(), "`nope`".to_string()));
        assert_eq!(err("a AND status:  tödo").0, 15);
        assert_eq!(err("é status:x").0, 10);
        assert_eq!(err("status:(").1, STATUS);
    }

    #[test]
    fn error_dangling_operator_wants_a_filter() {
        assert_eq!(
            err("status:todo AND"),
            (15, FILTER.to_string(), "end of query".to_string())
        );
        assert_eq!(err("a OR"), (4, FILTER.to_string(), "end of query".to_string()));
        assert_eq!(err("NOT"), (3, FILTER.to_string(), "end of query".to_string()));
        assert_eq!(err("a AND OR b"), (6, FILTER.to_string(), "`OR`".to_string()));
        assert_eq!(err("AND a"), (0, FILTER.to_string(), "`AND`".to_string()));
        assert_eq!(err("and*"), (0, FILTER.to_string(), "`and`".to_string()));
        assert_eq!(err(":x"), (0, FILTER.to_string(), "`:`".to_string()));
        assert_eq!(err("a <= b").0, 0); // `a` is not a field
        assert_eq!(err("()"), (1, FILTER.to_string(), "`)`".to_string()));
    }

    #[test]
    fn error_unbalanced_parentheses() {
        assert_eq!(
            err("(status:todo"),
            (12, RPAREN.to_string(), "end of query".to_string())
        );
        assert_eq!(err("((a) OR b"), (9, "`)`".to_string(), "end of query".to_string()));
        assert_eq!(err("status:todo)"), (11, END.to_string(), "`)`".to_string()));
        assert_eq!(err("a) OR (b"), (1, END.to_string(), "`)`".to_string()));
    }

    #[test]
    fn error_unknown_field_lists_the_known_ones() {
        let (pos, expected, found) = err("foo:bar");
        assert_eq!((pos, found.as_str()), (0, "`foo`"));
        assert_eq!(expected, FIELD);
        for field in [
            "status",
            "label.JOB",
            "meta.KEY",
            "text",
            "prediction.JOB.score",
            "priority",
            "labels",
        ] {
            assert!(expected.contains(field), "{field} missing from {expected}");
        }
        assert_eq!(
            err("a AND foo.bar : x"),
            (6, FIELD.to_string(), "`foo.bar`".to_string())
        );
        assert_eq!(err("honeypot:yes").0, 0);
        assert_eq!(err("score < 1").0, 0);
        assert_eq!(err("ça:x"), (0, FIELD.to_string(), "`ça`".to_string()));
    }

    #[test]
    fn error_numbers() {
        assert_eq!(err("priority < abc"), (11, NUMBER.to_string(), "`abc`".to_string()));
        assert_eq!(err("priority <"), (10, NUMBER.to_string(), "end of query".to_string()));
        for bad in [
            "inf", "NaN", "infinity", "1e", "1e+", ".", "-", "+.e1", "0x10", "1_000", "5abc", "1..2",
        ] {
            assert_eq!(
                err(&format!("priority<{bad}")),
                (9, NUMBER.to_string(), show(bad)),
                "{bad}"
            );
        }
        assert_eq!(
            err("priority <= \"5\""),
            (12, NUMBER.to_string(), "a quoted string".to_string())
        );
        assert_eq!(err("priority == 5"), (10, NUMBER.to_string(), "`=`".to_string()));
        assert_eq!(err("priority:5"), (8, CMP.to_string(), "`:`".to_string()));
        assert_eq!(p("prediction.score: 1"), class(LabelKind::Prediction, "score", "1"));
        assert_eq!(
            err("prediction.job < 1"),
            (15, COLON_OR_SCORE.to_string(), "`<`".to_string())
        );
        assert_eq!(
            err("prediction.job.scor < 1"),
            (15, SCORE.to_string(), "`scor`".to_string())
        );
        assert_eq!(
            err("prediction.\"score\" < 1"),
            (19, COLON_OR_SCORE.to_string(), "`<`".to_string())
        );
    }

    #[test]
    fn error_field_shapes() {
        assert_eq!(err("label:x"), (5, DOT_JOB.to_string(), "`:`".to_string()));
        assert_eq!(err("label.a.b:c"), (7, COLON_AFTER_JOB.to_string(), "`.b`".to_string()));
        assert_eq!(err("label.a/b:c"), (7, JOB.to_string(), "`/`".to_string()));
        assert_eq!(err("label.:c"), (6, JOB.to_string(), "`:`".to_string()));
        assert_eq!(err("label.a:b.c"), (9, CLASS.to_string(), "`.`".to_string()));
        assert_eq!(err("label.a:"), (8, CLASS.to_string(), "end of query".to_string()));
        assert_eq!(err("review.a < 1"), (9, COLON_AFTER_JOB.to_string(), "`<`".to_string()));
        assert_eq!(err("meta:x"), (4, DOT_KEY.to_string(), "`:`".to_string()));
        assert_eq!(err("meta.k:a/b"), (8, META_VALUE.to_string(), "`/`".to_string()));
        assert_eq!(err("meta.k = 3"), (7, COLON.to_string(), "`=`".to_string()));
        assert_eq!(err("author:a b:c").0, 9);
        assert_eq!(err("author:a,b"), (8, USER.to_string(), "`,`".to_string()));
        assert_eq!(err("model:"), (6, MODEL.to_string(), "end of query".to_string()));
        assert_eq!(err("rule:)"), (5, RULE.to_string(), "`)`".to_string()));
        assert_eq!(err("status.x:todo"), (6, COLON.to_string(), "`.x`".to_string()));
        assert_eq!(err("status < 1"), (7, COLON.to_string(), "`<`".to_string()));
        assert_eq!(
            err("label.\"a\""),
            (9, AFTER_FIELD.to_string(), "end of query".to_string())
        );
    }

    #[test]
    fn error_text_values() {
        assert_eq!(err("text:"), (5, TEXT.to_string(), "end of query".to_string()));
        assert_eq!(err("text:*"), (5, TEXT.to_string(), "`*`".to_string()));
        assert_eq!(err("text:\"\""), (5, TEXT.to_string(), "an empty string".to_string()));
        assert_eq!(err("\"  \""), (0, TEXT.to_string(), "an empty string".to_string()));
        assert_eq!(err("text:\"\"*"), (5, TEXT.to_string(), "an empty string".to_string()));
        assert_eq!(err("text:a:b"), (6, BOUNDARY.to_string(), "`:`".to_string()));
    }

    #[test]
    fn error_atoms_must_be_separated() {
        assert_eq!(
            err("status:todo\"x\""),
            (11, BOUNDARY.to_string(), "a quoted string".to_string())
        );
        assert_eq!(
            err("\"a\"\"b\""),
            (3, BOUNDARY.to_string(), "a quoted string".to_string())
        );
        assert_eq!(err("**"), (1, BOUNDARY.to_string(), "`*`".to_string()));
        assert_eq!(err("de*liv"), (3, BOUNDARY.to_string(), "`liv`".to_string()));
        assert_eq!(err("priority<1<2"), (10, BOUNDARY.to_string(), "`<`".to_string()));
        assert_eq!(err("labels>=1>=2").1, BOUNDARY);
    }

    #[test]
    fn error_quoted_strings() {
        assert_eq!(
            err("text:\"abc"),
            (9, CLOSING_QUOTE.to_string(), "end of query".to_string())
        );
        assert_eq!(
            err("\"abc\\"),
            (5, CLOSING_QUOTE.to_string(), "end of query".to_string())
        );
        assert_eq!(err("author:\"a\\nb\""), (9, ESCAPE.to_string(), "`\\n`".to_string()));
        assert_eq!(
            err("label.\"unterminated"),
            (19, CLOSING_QUOTE.to_string(), "end of query".to_string())
        );
    }

    #[test]
    fn error_positions_are_byte_offsets_in_non_ascii_input() {
        // `é` and `ü` are two bytes, `日本` six, `🦀` four.
        assert_eq!(err("été AND"), (9, FILTER.to_string(), "end of query".to_string()));
        assert_eq!(err("日本 priority < ü"), (18, NUMBER.to_string(), "`ü`".to_string()));
        assert_eq!(err("🦀 (a"), (7, RPAREN.to_string(), "end of query".to_string()));
        assert_eq!(err("label.jöb:ça/va"), (14, CLASS.to_string(), "`/`".to_string()));
        let (pos, _, found) = err("x\u{0}:y");
        assert_eq!((pos, found.as_str()), (0, "`x\\u{0}`"));
    }

    #[test]
    fn found_is_cut_and_control_chars_escaped() {
        let long = "x".repeat(100);
        let (_, _, found) = err(&format!("{long}:y"));
        assert_eq!(found, format!("`{}…`", "x".repeat(FOUND_MAX_CHARS)));
        assert_eq!(err("priority < \u{7}").2, "`\\u{7}`");
    }

    #[test]
    fn error_display_names_position_expected_and_found() {
        let e = parse("status:").unwrap_err();
        assert_eq!(
            e.to_string(),
            "query error at position 7: expected a status (todo, ongoing, labeled, to_review, reviewed), found end of query"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let ok = format!("{}a{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert_eq!(p(&ok), term("a"));
        let deep = format!("{}a{}", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(err(&deep).0, MAX_NESTING);
        let nots = "NOT ".repeat(100_000) + "a";
        assert_eq!(err(&nots).0, MAX_NESTING * 4);
    }

    #[test]
    fn operator_count_is_bounded() {
        let ok = vec!["a"; MAX_OPERATORS + 1].join(" ");
        assert!(parse(&ok).is_ok());
        let many = vec!["a"; 200_000].join(" OR ");
        let (pos, expected, _) = err(&many);
        assert_eq!(pos, (MAX_OPERATORS + 1) * 5 - 3);
        assert!(expected.contains("operators"));
    }

    #[test]
    fn docs_examples_parse() {
        for q in [
            r#"status:todo AND label.category:invoice AND NOT author:alice AND text:"urgent delivery""#,
            r#"prediction.score < 0.7 OR (review.category:"creative work" AND labels >= 2)"#,
            "deliv* NOT honeypot model:clf@3",
            r#"label."doc.type":letter"#,
            r#"prediction."my job".score < 0.5"#,
            r#"meta."source url":"https://example.com/a""#,
            "e.g. o'clock c++ android notes && || !",
            "priority>=5 status : todo",
        ] {
            let f = p(q);
            assert_eq!(p(&to_query_string(&f)), f, "{q}");
        }
        assert_eq!(err(r#""a":b"#).0, 3);
    }

    #[test]
    fn printer_examples() {
        let f = p(r#"status:TODO author:"Ann Lee" OR NOT (a OR b)"#);
        assert_eq!(
            to_query_string(&f),
            r#"status:todo AND author:"Ann Lee" OR NOT (text:a OR text:b)"#
        );
        let (a, b, c) = (term("a"), term("b"), term("c"));
        assert_eq!(
            to_query_string(&a.clone().and(b.clone().and(c.clone()))),
            "text:a AND (text:b AND text:c)"
        );
        assert_eq!(
            to_query_string(&a.clone().or(b.clone()).and(c.clone())),
            "(text:a OR text:b) AND text:c"
        );
        assert_eq!(
            to_query_string(&a.clone().or(b.clone().or(c.clone()))),
            "text:a OR (text:b OR text:c)"
        );
        assert_eq!(
            to_query_string(&a.clone().and(b.clone()).not()),
            "NOT (text:a AND text:b)"
        );
        assert_eq!(to_query_string(&Filter::All), "*");
        assert_eq!(
            to_query_string(&meta("k", MetaValue::Str("true".into()))),
            r#"meta.k:"true""#
        );
        assert_eq!(
            to_query_string(&class(LabelKind::Inference, "a.b", "x y")),
            r#"inference."a.b":"x y""#
        );
        assert_eq!(
            to_query_string(&num(score(LabelKind::Prediction, Some("j")), CmpOp::Le, 1e-7)),
            "prediction.j.score <= 0.0000001"
        );
        assert_eq!(
            to_query_string(&num(NumField::Priority, CmpOp::Gt, f64::NEG_INFINITY)),
            "priority > -1e999"
        );
        assert_eq!(
            to_query_string(&Filter::Text(TextQuery::Prefix("a\"b".into()))),
            r#"text:"a\"b"*"#
        );
    }

    #[test]
    fn printer_output_without_syntax_is_rejected_not_misread() {
        let unexpressible = [
            meta("n", MetaValue::Num(3.0)),
            num(NumField::Priority, CmpOp::Lt, f64::NAN),
            num(score(LabelKind::Annotation, None), CmpOp::Lt, 1.0),
            num(score(LabelKind::Review, Some("j")), CmpOp::Lt, 1.0),
            Filter::Text(TextQuery::Term(String::new())),
            Filter::Text(TextQuery::Prefix(String::new())),
            Filter::Text(TextQuery::Phrase(Vec::new())),
        ];
        for f in unexpressible {
            let text = to_query_string(&f);
            assert!(parse(&text).is_err(), "{text:?} should not parse");
        }
    }

    // ---- property tests ------------------------------------------------------------

    fn status() -> impl Strategy<Value = Status> {
        prop::sample::select(Status::ALL.to_vec())
    }

    fn kind() -> impl Strategy<Value = LabelKind> {
        prop::sample::select(vec![
            LabelKind::Annotation,
            LabelKind::Prediction,
            LabelKind::Inference,
            LabelKind::Review,
        ])
    }

    /// Any string: identifiers, names, keywords, punctuation, anything at all.
    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9_-]{1,8}",
            "[a-z0-9_.@-]{1,8}",
            prop::sample::select(vec!["score", "true", "false", "AND", "or", "not", "honeypot", "*", ""])
                .prop_map(str::to_string),
            "[ a-z:\\\"().*<>=@é日\t\n]{0,8}",
            any::<String>(),
        ]
    }

    /// A word as the parser produces it: lower-case, no whitespace, not empty.
    fn text_word() -> impl Strategy<Value = String> {
        prop_oneof!["[a-z0-9]{1,8}", "[a-z0-9éß日_.@:\\\"()*<>=!,'-]{1,8}",]
    }

    fn number() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("NaN cannot round-trip", |v| !v.is_nan()),
            (-1000i32..1000).prop_map(f64::from),
            Just(0.7),
        ]
    }

    fn op() -> impl Strategy<Value = CmpOp> {
        prop::sample::select(vec![CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge, CmpOp::Eq])
    }

    fn num_field() -> impl Strategy<Value = NumField> {
        prop_oneof![
            (
                prop::sample::select(vec![LabelKind::Prediction, LabelKind::Inference]),
                prop::option::of(any_text())
            )
                .prop_map(|(kind, job)| NumField::Score { kind, job }),
            Just(NumField::Priority),
            Just(NumField::Seconds),
            Just(NumField::Created),
            Just(NumField::Labels),
        ]
    }

    fn text_query() -> impl Strategy<Value = TextQuery> {
        prop_oneof![
            text_word().prop_map(TextQuery::Term),
            prop::collection::vec(text_word(), 2..5).prop_map(TextQuery::Phrase),
            text_word().prop_map(TextQuery::Prefix),
        ]
    }

    fn atom() -> impl Strategy<Value = Filter> {
        prop_oneof![
            Just(Filter::All),
            Just(Filter::Honeypot),
            Just(Filter::Deleted),
            status().prop_map(Filter::Status),
            (kind(), any_text(), any_text()).prop_map(|(kind, job, class)| Filter::Class { kind, job, class }),
            any_text().prop_map(Filter::Author),
            any_text().prop_map(Filter::Model),
            any_text().prop_map(Filter::Rule),
            (
                any_text(),
                prop_oneof![
                    any::<bool>().prop_map(MetaValue::Bool),
                    any_text().prop_map(MetaValue::Str)
                ]
            )
                .prop_map(|(key, value)| Filter::Meta { key, value }),
            (num_field(), op(), number()).prop_map(|(field, op, value)| Filter::Numeric { field, op, value }),
            text_query().prop_map(Filter::Text),
        ]
    }

    fn filter() -> impl Strategy<Value = Filter> {
        atom().prop_recursive(6, 48, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(l, r)| l.and(r)),
                (inner.clone(), inner.clone()).prop_map(|(l, r)| l.or(r)),
                inner.prop_map(Filter::not),
            ]
        })
    }

    /// Strings made of the language's own pieces, to reach deep into the parser.
    fn query_like() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "status",
            "label",
            "prediction",
            "inference",
            "review",
            "author",
            "model",
            "rule",
            "meta",
            "text",
            "priority",
            "seconds",
            "created",
            "labels",
            "score",
            "honeypot",
            "deleted",
            "AND",
            "OR",
            "NOT",
            "and",
            "todo",
            "x",
            "é",
            "日",
            "1",
            "-2.5e3",
            ".",
            ":",
            "\"",
            "\\",
            "*",
            "(",
            ")",
            "<",
            "<=",
            ">",
            ">=",
            "=",
            "@",
            " ",
            " ",
            "\t",
            "\u{0}",
            "true",
        ]);
        prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn printed_filters_parse_back_to_the_same_tree(f in filter()) {
            let text = to_query_string(&f);
            match parse(&text) {
                Ok(back) => prop_assert_eq!(back, f, "printed as {:?}", text),
                Err(e) => prop_assert!(false, "{:?} does not parse: {}", text, e),
            }
        }

        #[test]
        fn parse_never_panics_on_any_string(s in any::<String>()) {
            let _ = parse(&s);
        }

        #[test]
        fn parse_never_panics_on_query_like_strings(s in query_like()) {
            if let Err(Error::Query { pos, .. }) = parse(&s) {
                prop_assert!(pos <= s.len() && s.is_char_boundary(pos));
            }
        }

        #[test]
        fn whatever_parses_prints_and_parses_back(s in query_like()) {
            if let Ok(f) = parse(&s) {
                let text = to_query_string(&f);
                prop_assert_eq!(parse(&text).ok(), Some(f), "{:?} printed as {:?}", s, text);
            }
        }
    }
}
