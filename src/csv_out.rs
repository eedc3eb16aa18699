//! Every CSV file shadowgate writes (`report.csv`, `shadowgate events --format csv`) goes
//! through [`CsvWriter`]: a fixed header, rows of typed cells, and text cells neutralised
//! against CSV (formula) injection by [`neutralise`].
//!
//! Text in these files comes from the network: a DHCP host name, an SNI, a DNS question, an
//! inventory owner. A spreadsheet opens a cell such as `=HYPERLINK("http://x","click")` as a
//! live formula, so a host on the clinic's network could plant one in the compliance officer's
//! spreadsheet. Following the OWASP CSV injection guidance, a text cell that begins with `=`,
//! `+`, `-`, `@`, a tab or a carriage return gets a leading single quote, which spreadsheets
//! show as text; the csv crate quotes separators, quotes and line breaks inside cells.
//!
//! Numbers the project writes itself (counts, ports, sequence numbers, timestamps) are
//! [`Cell::Int`] / [`Cell::Uint`] and stay plain numbers: they are not formulas, even when
//! negative, and a quote would make them text in the spreadsheet.

use std::borrow::Cow;
use std::io::Write;

/// The characters that make a spreadsheet read a cell as a formula (OWASP).
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A text cell as written to CSV: prefixed with `'` when it begins with a formula character
/// (`=`, `+`, `-`, `@`, tab, carriage return), unchanged otherwise.
pub fn neutralise(text: &str) -> Cow<'_, str> {
    if text.starts_with(FORMULA_START) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// One cell of a row: text (neutralised) or a number the project computed (written as is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    Text(&'a str),
    /// An optional text: empty when absent.
    OptText(Option<&'a str>),
    Int(i64),
    Uint(u64),
    Bool(bool),
}

/// A CSV writer whose every row has the header's columns (`N`) and whose text cells are
/// neutralised.
pub struct CsvWriter<W: Write, const N: usize> {
    w: csv::Writer<W>,
}

impl<W: Write, const N: usize> CsvWriter<W, N> {
    /// Start a CSV on `w` with this header.
    pub fn new(w: W, header: [&str; N]) -> csv::Result<Self> {
        let mut w = CsvWriter {
            w: csv::WriterBuilder::new().has_headers(false).from_writer(w),
        };
        w.row(header.map(Cell::Text))?;
        Ok(w)
    }

    /// Write one row.
    pub fn row(&mut self, cells: [Cell<'_>; N]) -> csv::Result<()> {
        let mut num = itoa::Buffer::new();
        let mut rec = csv::ByteRecord::with_capacity(64, N);
        for c in cells {
            match c {
                Cell::Text(t) => rec.push_field(neutralise(t).as_bytes()),
                Cell::OptText(t) => rec.push_field(neutralise(t.unwrap_or("")).as_bytes()),
                Cell::Int(n) => rec.push_field(num.format(n).as_bytes()),
                Cell::Uint(n) => rec.push_field(num.format(n).as_bytes()),
                Cell::Bool(b) => rec.push_field(if b { b"true" } else { b"false" }),
            }
        }
        self.w.write_byte_record(&rec)
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }

    /// Flush and hand back the inner writer.
    pub fn into_inner(self) -> Result<W, String> {
        self.w.into_inner().map_err(|e| e.error().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_starts_are_neutralised() {
        for bad in [
            "=HYPERLINK(\"http://x\",\"click\")",
            "+1+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            assert_eq!(neutralise(bad), format!("'{bad}"), "{bad:?}");
        }
        for ok in ["claude.ai", "", " =1", "a=b", "exam-room-2", "'quoted"] {
            assert_eq!(neutralise(ok), ok, "{ok:?}");
        }
    }

    #[test]
    fn rows_have_the_header_columns_and_numbers_stay_numbers() {
        let mut w = CsvWriter::new(Vec::new(), ["name", "count", "seq", "flag", "opt"]).unwrap();
        w.row([
            Cell::Text("=cmd|' /C calc'!A0"),
            Cell::Uint(3),
            Cell::Int(-5),
            Cell::Bool(true),
            Cell::OptText(None),
        ])
        .unwrap();
        w.row([
            Cell::Text("a,\"b\"\nc"),
            Cell::Uint(0),
            Cell::Int(7),
            Cell::Bool(false),
            Cell::OptText(Some("-x")),
        ])
        .unwrap();
        let bytes = w.into_inner().unwrap();
        let mut r = csv::Reader::from_reader(bytes.as_slice());
        assert_eq!(
            r.headers().unwrap(),
            vec!["name", "count", "seq", "flag", "opt"]
        );
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows[0], vec!["'=cmd|' /C calc'!A0", "3", "-5", "true", ""]);
        assert_eq!(rows[1], vec!["a,\"b\"\nc", "0", "7", "false", "'-x"]);
    }
}
