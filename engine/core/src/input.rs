//! A forgiving SQL lexer for text that is still being typed, and the `is_complete` answer built on it.
//!
//! sqlparser's tokenizer rejects unterminated strings and comments, which is exactly what half-typed cells contain,
//! so completion, inspection and input completeness share this small lexer instead. It only needs to tell words,
//! quoted names, strings, comments and punctuation apart, with byte spans into the original text.

/// Whether a cell is ready to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputState {
    Complete,
    /// Something is still open: a parenthesis, a quote or a block comment.
    Incomplete,
    /// It can never become valid by typing more (a `)` with no `(`).
    Invalid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A bare word: keyword or identifier.
    Word,
    /// A `"quoted identifier"`; `closed` is false when the input ends inside it.
    QuotedName {
        closed: bool,
    },
    /// A `'string'` (also `E'..'`, `$$..$$`); `closed` is false when the input ends inside it.
    Str {
        closed: bool,
    },
    /// `-- line` or `/* block */`; `closed` is false for an unterminated block comment.
    Comment {
        closed: bool,
    },
    Number,
    Punct(char),
}

#[derive(Debug, Clone, Copy)]
pub struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub fn text<'a>(&self, src: &'a str) -> &'a str {
        &src[self.start..self.end]
    }
}

pub fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// Lexes `src` without ever failing.
pub fn lex(src: &str) -> Vec<Token> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let kind = match c {
            c if c.is_whitespace() => continue,
            '-' if bytes.get(start + 1) == Some(&b'-') => {
                while let Some(&(_, c)) = chars.peek() {
                    if c == '\n' {
                        break;
                    }
                    chars.next();
                }
                TokenKind::Comment { closed: true }
            }
            '/' if bytes.get(start + 1) == Some(&b'*') => {
                chars.next();
                let mut depth = 1usize;
                let mut prev = '\0';
                for (_, c) in chars.by_ref() {
                    if prev == '/' && c == '*' {
                        depth += 1;
                        prev = '\0';
                        continue;
                    }
                    if prev == '*' && c == '/' {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                        prev = '\0';
                        continue;
                    }
                    prev = c;
                }
                TokenKind::Comment { closed: depth == 0 }
            }
            '\'' => TokenKind::Str {
                closed: skip_quoted(&mut chars, '\'', false),
            },
            'E' | 'e' if bytes.get(start + 1) == Some(&b'\'') => {
                chars.next();
                TokenKind::Str {
                    closed: skip_quoted(&mut chars, '\'', true),
                }
            }
            '"' => TokenKind::QuotedName {
                closed: skip_quoted(&mut chars, '"', false),
            },
            '`' => TokenKind::QuotedName {
                closed: skip_quoted(&mut chars, '`', false),
            },
            '$' if bytes.get(start + 1) == Some(&b'$') => {
                chars.next();
                let mut prev = '\0';
                let mut closed = false;
                for (_, c) in chars.by_ref() {
                    if prev == '$' && c == '$' {
                        closed = true;
                        break;
                    }
                    prev = c;
                }
                TokenKind::Str { closed }
            }
            c if c.is_ascii_digit() => {
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                        chars.next();
                    } else {
                        break;
                    }
                }
                TokenKind::Number
            }
            c if is_word_char(c) => {
                while let Some(&(_, c)) = chars.peek() {
                    if is_word_char(c) {
                        chars.next();
                    } else {
                        break;
                    }
                }
                TokenKind::Word
            }
            c => TokenKind::Punct(c),
        };
        let end = chars.peek().map_or(src.len(), |&(i, _)| i);
        tokens.push(Token { kind, start, end });
    }
    tokens
}

/// Skips to the closing `quote` (a doubled quote is an escaped one; with `backslash`, `\x` escapes too).
/// Returns whether the closing quote was found.
fn skip_quoted(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    quote: char,
    backslash: bool,
) -> bool {
    while let Some((_, c)) = chars.next() {
        if backslash && c == '\\' {
            chars.next();
        } else if c == quote {
            if chars.peek().map(|&(_, c)| c) == Some(quote) {
                chars.next();
            } else {
                return true;
            }
        }
    }
    false
}

/// Is the cell ready to run? Incomplete while a parenthesis, quote or block comment is open.
pub fn input_state(src: &str) -> InputState {
    let mut depth: i64 = 0;
    for token in lex(src) {
        match token.kind {
            TokenKind::Str { closed: false }
            | TokenKind::QuotedName { closed: false }
            | TokenKind::Comment { closed: false } => return InputState::Incomplete,
            TokenKind::Punct('(') | TokenKind::Punct('[') => depth += 1,
            TokenKind::Punct(')') | TokenKind::Punct(']') => {
                depth -= 1;
                if depth < 0 {
                    return InputState::Invalid;
                }
            }
            _ => {}
        }
    }
    if depth > 0 {
        InputState::Incomplete
    } else {
        InputState::Complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_statements() {
        for sql in [
            "",
            "SELECT 1",
            "SELECT 1;",
            "SELECT '(' FROM t",
            "SELECT \"a(\" FROM t -- (",
            "SELECT 1 /* ( */",
            "SELECT 'it''s'",
            "SELECT E'a\\'b'",
            "SELECT (1 + (2))",
            "SELECT [1, 2]",
            "SELECT $$ ( $$",
        ] {
            assert_eq!(input_state(sql), InputState::Complete, "{sql}");
        }
    }

    #[test]
    fn open_constructs_are_incomplete() {
        for sql in [
            "SELECT (1",
            "SELECT count(",
            "SELECT 'abc",
            "SELECT 'it''s",
            "SELECT \"col",
            "SELECT 1 /* comment",
            "SELECT /* a /* nested */ still open",
            "SELECT [1, 2",
            "SELECT $$ body",
        ] {
            assert_eq!(input_state(sql), InputState::Incomplete, "{sql}");
        }
    }

    #[test]
    fn stray_closing_parenthesis_is_invalid() {
        assert_eq!(input_state("SELECT 1)"), InputState::Invalid);
    }

    #[test]
    fn tokens_have_spans_into_unicode_text() {
        let src = "SELECT nämé, 'ü' FROM t";
        let words: Vec<&str> = lex(src)
            .iter()
            .filter(|t| t.kind == TokenKind::Word)
            .map(|t| t.text(src))
            .collect();
        assert_eq!(words, ["SELECT", "nämé", "FROM", "t"]);
    }
}
