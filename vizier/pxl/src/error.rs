//! Compile errors and the byte-offset → `line:col` mapping they are reported with.

use std::fmt;

/// A compile error at a 1-based `line:col` (columns count characters, not bytes); displays as
/// `line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl CompileError {
    pub fn new(line: usize, col: usize, message: impl Into<String>) -> Self {
        CompileError {
            line,
            col,
            message: message.into(),
        }
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

impl std::error::Error for CompileError {}

/// Maps byte offsets of one source text to 1-based line and character columns.
#[derive(Debug, Clone)]
pub struct LineIndex<'s> {
    source: &'s str,
    /// Byte offset where each line starts; `line_starts[0] == 0`.
    line_starts: Vec<usize>,
}

impl<'s> LineIndex<'s> {
    pub fn new(source: &'s str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex {
            source,
            line_starts,
        }
    }

    /// The 1-based `(line, col)` of a byte offset. Offsets past the end map to the end; an offset
    /// inside a multi-byte character maps to that character.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.source.len());
        while !self.source.is_char_boundary(offset) {
            offset -= 1;
        }
        // The last line start at or before the offset.
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let col = self.source[self.line_starts[line]..offset].chars().count();
        (line + 1, col + 1)
    }

    /// A [`CompileError`] at a byte offset.
    pub fn error(&self, offset: usize, message: impl Into<String>) -> CompileError {
        let (line, col) = self.line_col(offset);
        CompileError::new(line, col, message)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn first_character_is_one_one() {
        let index = LineIndex::new("import px\ndf = 1\n");
        assert_eq!(index.line_col(0), (1, 1));
        assert_eq!(index.line_col(7), (1, 8));
    }

    #[test]
    fn offsets_after_a_newline_start_the_next_line() {
        let index = LineIndex::new("ab\ncd\n\nef");
        assert_eq!(index.line_col(2), (1, 3)); // the '\n' itself belongs to line 1
        assert_eq!(index.line_col(3), (2, 1));
        assert_eq!(index.line_col(6), (3, 1));
        assert_eq!(index.line_col(8), (4, 2));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let index = LineIndex::new("s = 'héllo' + x");
        let x = "s = 'héllo' + x".find('x').unwrap();
        assert_eq!(index.line_col(x), (1, 15));
    }

    #[test]
    fn out_of_range_and_mid_character_offsets_are_clamped() {
        let index = LineIndex::new("é\nz");
        assert_eq!(index.line_col(1), (1, 1)); // inside 'é'
        assert_eq!(index.line_col(100), (2, 2));
    }

    #[test]
    fn display_is_line_colon_col_colon_message() {
        assert_eq!(CompileError::new(3, 7, "boom").to_string(), "3:7: boom");
    }

    proptest! {
        /// Walking the text character by character must agree with the index everywhere.
        #[test]
        fn agrees_with_a_character_walk(text in "[a-zé\n ]{0,60}") {
            let index = LineIndex::new(&text);
            let (mut line, mut col) = (1, 1);
            for (offset, c) in text.char_indices() {
                prop_assert_eq!(index.line_col(offset), (line, col));
                if c == '\n' { line += 1; col = 1; } else { col += 1; }
            }
            prop_assert_eq!(index.line_col(text.len()), (line, col));
        }
    }
}
