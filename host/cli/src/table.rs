//! Plain-text tables: columns as wide as their widest cell, two spaces
//! apart, the last column unpadded. Every list command prints through
//! [`print_table`].

/// Print `header` and `rows` as a table on stdout. Cells are counted in
/// characters; a row shorter than the header leaves the rest empty.
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", table(header, rows));
}

/// The table [`print_table`] prints.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            if i + 1 < widths.len() {
                text.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell() {
        let t = table(
            &["ID", "NAME", "NOTE"],
            &[
                vec!["1".into(), "a-long-name".into(), "x".into()],
                vec!["22".into(), "b".into(), "".into()],
            ],
        );
        assert_eq!(t, "ID  NAME         NOTE\n1   a-long-name  x\n22  b\n");
    }
}
