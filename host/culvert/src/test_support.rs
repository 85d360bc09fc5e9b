//! Helpers for this repository's tests and benchmarks; not part of the
//! supported API.

/// `bytes` with a custom section holding `payload` appended.
pub fn with_custom_section(bytes: &[u8], payload: &str) -> Vec<u8> {
    let name = b"culvert-bench";
    let mut body = Vec::new();
    leb128(&mut body, name.len() as u64);
    body.extend_from_slice(name);
    body.extend_from_slice(payload.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    leb128(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    out
}

/// Append `v` as unsigned LEB128.
fn leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
