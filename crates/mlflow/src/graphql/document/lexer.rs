//! Reading the document's tokens: names, punctuators, numbers, strings with their
//! escapes and block strings, and the positioned messages of its errors.

use std::fmt::Display;

use super::Parser;

/// The message for a document over one of the limits.
pub(super) fn over(what: impl Display, limit: usize) -> String {
    format!("the document {what}, over the limit of {limit}")
}

/// Appends the 1-based line and column of byte offset `at` to `msg`.
pub(super) fn located(text: &str, at: usize, msg: &str) -> String {
    let (mut line, mut column, mut after_cr) = (1, 1, false);
    for c in text.get(..at).unwrap_or(text).chars() {
        match c {
            // "\r\n" is one line terminator, already counted at the '\r'.
            '\n' if after_cr => {}
            '\n' | '\r' => (line, column) = (line + 1, 1),
            _ => column += 1,
        }
        after_cr = c == '\r';
    }
    format!("{msg} (line {line}, column {column})")
}

/// Describes the character starting `rest` the way graphql-js does in messages.
pub(super) fn describe_char(rest: &str) -> String {
    match rest.chars().next() {
        None => "<EOF>".to_string(),
        Some('"') => "'\"'".to_string(),
        Some(c @ ' '..='~') => format!("\"{c}\""),
        Some(c) => format!("U+{:04X}", u32::from(c)),
    }
}

/// Reads four hex digits at the start of `s`.
pub(super) fn hex4(s: Option<&str>) -> Option<u32> {
    let digits = s?.get(..4)?;
    // from_str_radix alone would also accept a leading '+'.
    let all_hex = digits.bytes().all(|b| b.is_ascii_hexdigit());
    u32::from_str_radix(digits, 16).ok().filter(|_| all_hex)
}

/// The spec's BlockStringValue: removes the common indentation of all lines but
/// the first, then the blank lines at the start and end.
pub(super) fn block_string_value(raw: &str) -> String {
    let raw = raw.replace("\r\n", "\n").replace('\r', "\n");
    let indent = |line: &str| line.len() - line.trim_start_matches([' ', '\t']).len();
    let common = (raw.split('\n').skip(1))
        .filter(|line| indent(line) < line.len())
        .map(indent)
        .min()
        .unwrap_or(0);
    // A blank line may be shorter than the common indentation, hence get().
    let lines: Vec<&str> = (raw.split('\n').enumerate())
        .map(|(i, line)| {
            if i == 0 {
                line
            } else {
                line.get(common..).unwrap_or("")
            }
        })
        .collect();
    let blank = |line: &&str| indent(line) == line.len();
    let first = lines.iter().position(|l| !blank(l)).unwrap_or(lines.len());
    let end = lines.iter().rposition(|l| !blank(l)).map_or(0, |i| i + 1);
    lines.get(first..end).unwrap_or_default().join("\n")
}

/// A lexical token; punctuators are kept as their text.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) enum Tok<'a> {
    #[default]
    Eof,
    Punct(&'static str),
    Name(&'a str),
    Int(&'a str),
    Float(&'a str),
    Str(String),
    Block(String),
}

impl Tok<'_> {
    /// The description used in syntax errors, as in graphql-js.
    pub(super) fn describe(&self) -> String {
        match self {
            Tok::Eof => "<EOF>".to_string(),
            Tok::Punct(p) => format!("\"{p}\""),
            Tok::Name(v) => format!("Name \"{v}\""),
            Tok::Int(v) => format!("Int \"{v}\""),
            Tok::Float(v) => format!("Float \"{v}\""),
            Tok::Str(v) => format!("String \"{v}\""),
            Tok::Block(v) => format!("BlockString \"{v}\""),
        }
    }
}

const SINGLE_QUOTE: &str =
    "Unexpected single quote character ('), did you mean to use a double quote (\")?";

const PUNCTUATORS: [&str; 14] = [
    "!", "$", "&", "(", ")", "...", ":", "=", "@", "[", "]", "{", "|", "}",
];

impl<'a> Parser<'a> {
    pub(super) fn error(&self, at: usize, msg: impl Display) -> String {
        located(self.text, at, &format!("Syntax Error: {msg}"))
    }

    pub(super) fn unexpected(&self) -> String {
        self.error(self.start, format!("Unexpected {}.", self.tok.describe()))
    }

    pub(super) fn expected(&self, what: &str) -> String {
        let found = self.tok.describe();
        self.error(self.start, format!("Expected {what}, found {found}."))
    }

    pub(super) fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or("")
    }

    /// Moves to the next token.
    pub(super) fn advance(&mut self) -> Result<(), String> {
        loop {
            let rest = self.rest();
            match rest.as_bytes().first() {
                Some(b' ' | b'\t' | b'\n' | b'\r' | b',') => self.pos += 1,
                Some(b'#') => self.pos += rest.find(['\n', '\r']).unwrap_or(rest.len()),
                _ if rest.starts_with('\u{FEFF}') => self.pos += '\u{FEFF}'.len_utf8(),
                _ => break,
            }
        }
        self.start = self.pos;
        self.tok = self.lex()?;
        Ok(())
    }

    pub(super) fn lex(&mut self) -> Result<Tok<'a>, String> {
        let rest = self.rest();
        if let Some(p) = PUNCTUATORS.iter().find(|p| rest.starts_with(**p)) {
            self.pos += p.len();
            return Ok(Tok::Punct(p));
        }
        match rest.chars().next() {
            None => Ok(Tok::Eof),
            Some('_' | 'a'..='z' | 'A'..='Z') => {
                let end = rest.find(|c: char| c != '_' && !c.is_ascii_alphanumeric());
                let name = rest.get(..end.unwrap_or(rest.len())).unwrap_or("");
                self.pos += name.len();
                Ok(Tok::Name(name))
            }
            Some('-' | '0'..='9') => self.number(),
            Some('"') if rest.starts_with("\"\"\"") => self.block_string(),
            Some('"') => self.string(),
            Some('\'') => Err(self.error(self.pos, SINGLE_QUOTE)),
            Some(_) => {
                let msg = format!("Unexpected character: {}.", describe_char(rest));
                Err(self.error(self.pos, msg))
            }
        }
    }

    pub(super) fn number(&mut self) -> Result<Tok<'a>, String> {
        let (text, start) = (self.text, self.pos);
        let byte = |i: usize| text.as_bytes().get(i).copied().unwrap_or(0);
        let mut i = start + usize::from(byte(start) == b'-');
        if byte(i) == b'0' && byte(i + 1).is_ascii_digit() {
            return Err(self.bad_number(i + 1, "unexpected digit after 0"));
        }
        let zero = byte(i) == b'0';
        i = if zero { i + 1 } else { self.digits(i)? };
        let mut float = false;
        if byte(i) == b'.' {
            float = true;
            i = self.digits(i + 1)?;
        }
        if matches!(byte(i), b'e' | b'E') {
            float = true;
            i = self.digits(i + 1 + usize::from(matches!(byte(i + 1), b'+' | b'-')))?;
        }
        // A number running into a name or a dot is a typo, not two tokens.
        if byte(i) == b'.' || byte(i) == b'_' || byte(i).is_ascii_alphabetic() {
            return Err(self.bad_number(i, "expected digit but got"));
        }
        self.pos = i;
        let literal = text.get(start..i).unwrap_or("");
        let kind = if float { Tok::Float } else { Tok::Int };
        Ok(kind(literal))
    }

    /// Returns the offset just past one or more digits starting at `i`.
    pub(super) fn digits(&self, i: usize) -> Result<usize, String> {
        let rest = self.text.get(i..).unwrap_or("");
        match rest.bytes().take_while(u8::is_ascii_digit).count() {
            0 => Err(self.bad_number(i, "expected digit but got")),
            n => Ok(i + n),
        }
    }

    pub(super) fn bad_number(&self, at: usize, what: &str) -> String {
        let found = describe_char(self.text.get(at..).unwrap_or(""));
        self.error(at, format!("Invalid number, {what}: {found}."))
    }

    pub(super) fn string(&mut self) -> Result<Tok<'a>, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = self.rest();
            let (c, len) = match rest.chars().next() {
                Some('"') => break,
                None | Some('\n' | '\r') => {
                    return Err(self.error(self.pos, "Unterminated string."))
                }
                Some('\\') => self.escape(rest)?,
                Some(c) => (c, c.len_utf8()),
            };
            out.push(c);
            self.pos += len;
        }
        self.pos += 1;
        Ok(Tok::Str(out))
    }

    /// Decodes the escape sequence starting `rest`, returning it and its length.
    pub(super) fn escape(&self, rest: &str) -> Result<(char, usize), String> {
        let prefix = |len: usize| rest.chars().take(len).collect::<String>();
        let next = rest.as_bytes().get(1).copied().unwrap_or(0);
        // Both strings are ASCII, so a byte index in one is a char index in the other.
        if let Some(i) = "\"\\/bfnrt".bytes().position(|b| b == next) {
            let decoded = b"\"\\/\x08\x0c\n\r\t".get(i).copied().unwrap_or(b'?');
            return Ok((char::from(decoded), 2));
        }
        if next != b'u' {
            let msg = format!("Invalid character escape sequence: \"{}\".", prefix(2));
            return Err(self.error(self.pos, msg));
        }
        let invalid = |len: usize| {
            let msg = format!("Invalid Unicode escape sequence: \"{}\".", prefix(len));
            self.error(self.pos, msg)
        };
        if let Some(braced) = rest.strip_prefix("\\u{") {
            let n = braced.bytes().take_while(u8::is_ascii_hexdigit).count();
            // At most eight digits, as in graphql-js; from_u32 rejects surrogates
            // and values past U+10FFFF.
            let closed = n <= 8 && braced.get(n..n + 1) == Some("}");
            let code = braced
                .get(..n)
                .and_then(|d| u32::from_str_radix(d, 16).ok());
            let c = code.filter(|_| closed).and_then(char::from_u32);
            return c
                .map(|c| (c, n + 4))
                .ok_or_else(|| invalid((n + 4).min(12)));
        }
        let lead = hex4(rest.get(2..)).ok_or_else(|| invalid(6))?;
        if let Some(c) = char::from_u32(lead) {
            return Ok((c, 6));
        }
        // A surrogate is valid only as the first half of a JSON-style pair.
        let pair = rest.get(6..8) == Some("\\u");
        let trail = hex4(rest.get(8..)).filter(|_| pair);
        match trail {
            Some(t) if (0xD800..0xDC00).contains(&lead) && (0xDC00..0xE000).contains(&t) => {
                let c = char::from_u32(0x10000 + ((lead - 0xD800) << 10) + (t - 0xDC00));
                c.map(|c| (c, 12)).ok_or_else(|| invalid(6))
            }
            _ => Err(invalid(6)),
        }
    }

    pub(super) fn block_string(&mut self) -> Result<Tok<'a>, String> {
        self.pos += 3;
        let mut raw = String::new();
        loop {
            let rest = self.rest();
            if rest.starts_with("\"\"\"") {
                self.pos += 3;
                return Ok(Tok::Block(block_string_value(&raw)));
            }
            let (piece, len) = match rest.chars().next() {
                _ if rest.starts_with("\\\"\"\"") => ("\"\"\"", 4),
                Some(c) => (rest.get(..c.len_utf8()).unwrap_or(""), c.len_utf8()),
                None => return Err(self.error(self.pos, "Unterminated string.")),
            };
            raw.push_str(piece);
            self.pos += len;
        }
    }

    pub(super) fn skip(&mut self, punct: &str) -> Result<bool, String> {
        let found = matches!(self.tok, Tok::Punct(p) if p == punct);
        if found {
            self.advance()?;
        }
        Ok(found)
    }

    pub(super) fn expect(&mut self, punct: &str) -> Result<(), String> {
        match self.skip(punct)? {
            true => Ok(()),
            false => Err(self.expected(&format!("\"{punct}\""))),
        }
    }

    pub(super) fn name(&mut self) -> Result<String, String> {
        let Tok::Name(name) = self.tok else {
            return Err(self.expected("Name"));
        };
        self.advance()?;
        Ok(name.to_string())
    }
}
